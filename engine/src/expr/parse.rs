//! Parser for the crowd-expression text form: an operator-precedence loop over an explicit
//! stack for connectives and parentheses, and plain descent for the predicates inside them.
//!
//! Grammar (EBNF; tokens as in `super::lexer`, keywords case-insensitive), loosest first:
//!
//! ```text
//! expr      = or_expr ;
//! or_expr   = xor_expr { "OR" xor_expr } ;
//! xor_expr  = and_expr { "XOR" and_expr } ;
//! and_expr  = not_expr { "AND" not_expr } ;
//! not_expr  = { "NOT" } primary ;
//! primary   = "(" expr ")"
//!           | "ALL"
//!           | "KEYS" "(" key { "," key } ")"
//!           | path [ predicate ] ;                  (* a bare path is a flag tag *)
//! predicate = cmp_op literal
//!           | [ "NOT" ] "IN" list
//!           | "BETWEEN" literal "AND" literal       (* this AND belongs to BETWEEN *)
//!           | "HAS" ( literal | ( "ANY" | "ALL" ) list ) ;
//! list      = "(" literal { "," literal } ")" ;
//! cmp_op    = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
//! literal   = string | number | "TRUE" | "FALSE" | "DATE" string ;   (* DATE 'YYYY-MM-DD' *)
//! key       = string | number ;                     (* an integer >= 0 *)
//! path      = name | quoted ;
//! ```
//!
//! A chain of one operator becomes one n-ary node (`a AND b AND c` is `And[a, b, c]`); a
//! parenthesised operand stays a child node (`a AND (b AND c)` is `And[a, And[b, c]]`), so the
//! printer can reproduce the text's grouping. Parentheses around a single operand leave no trace.
//!
//! Behaviour predicates (the words in them are not reserved: `days`, `last`... stay usable as
//! field names elsewhere):
//!
//! ```text
//! primary  |= "DID" "(" path "," window ")" [ cmp_op number [ "TIMES" ] | "ON" cmp_op number "DAYS" ]
//!           | ( "FIRST_DID" | "LAST_DID" ) "(" path ")" when ;
//! window    = "LAST" number "DAYS" [ "ENDING" date ] | date "TO" date | "EVER" ;
//! when      = cmp_op number "DAYS" "AGO" | cmp_op date | "WITHIN" number "DAYS" ;
//! date      = "DATE" string ;
//! ```
//!
//! Reserved for later and rejected with "not supported yet": `crowd(...)` (saved crowds) and
//! `expr AS OF 'label'`.
//!
//! Limits: the input length and the nesting depth (each open parenthesis and each `NOT` counts
//! one level) are capped by [`ParseLimits`], so hostile input yields an error, never a stack
//! overflow. The parser does not recurse: open parentheses live on an explicit stack.

use std::fmt;

use super::ast::{Date, DidCount, Expr, HasMode, Literal, Measure, Occurrence, Path, When, Window};
use super::lexer::{Keyword, Lexer, Token, TokenKind, describe_text, shorten};

/// Bounds on the input the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longest accepted input, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting, counting each open parenthesis and each `NOT`.
    pub max_depth: usize,
}

impl ParseLimits {
    /// 64 KiB of text, 256 levels of nesting.
    pub const DEFAULT: ParseLimits = ParseLimits {
        max_len: 64 * 1024,
        max_depth: 256,
    };
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits::DEFAULT
    }
}

/// Why a text is not a crowd expression, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the offending token in the input.
    pub offset: usize,
    /// 1-based line of `offset` (lines end at `\n`).
    pub line: u32,
    /// 1-based column of `offset`, counted in chars.
    pub column: u32,
    /// What would have been accepted here (`"')'"`, `"AND"`, `"a string"`, ...); may be empty.
    pub expected: Vec<String>,
    /// The offending token as written (`"end of input"`, `"keyword AND"`, `"'#'"`, ...).
    pub found: String,
    /// The complete explanation, without the position.
    pub message: String,
}

impl ParseError {
    pub(super) fn new(
        text: &str,
        offset: usize,
        expected: &[&str],
        found: String,
        message: String,
    ) -> ParseError {
        let (line, column) = line_column(text, offset);
        ParseError {
            offset,
            line,
            column,
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            found,
            message,
        }
    }

    /// The error followed by the offending line of `text` and a caret under the position, for
    /// terminals:
    ///
    /// ```text
    /// line 1, column 7: expected a value after '=', found end of input
    ///   age =
    ///         ^
    /// ```
    pub fn render(&self, text: &str) -> String {
        let offset = floor_char_boundary(text, self.offset);
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = &text[line_start..line_end];
        let pad: String = text[line_start..offset]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{self}\n  {line}\n  {pad}^")
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// 1-based line and char column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(line), clamp(column))
}

/// The largest char boundary of `text` at or before `offset`.
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

type PResult<T> = Result<T, Box<ParseError>>;

/// What may start a value.
const VALUE_STARTS: &[&str] = &["a string", "a number", "TRUE", "FALSE", "DATE"];

/// What may start an expression.
const EXPR_STARTS: &[&str] = &["a field path", "'('", "NOT", "ALL", "KEYS"];

/// What may follow a path.
const PATH_FOLLOWERS: &[&str] = &[
    "'='",
    "'!='",
    "'<'",
    "'<='",
    "'>'",
    "'>='",
    "IN",
    "NOT IN",
    "BETWEEN",
    "HAS",
    "AND",
    "OR",
    "XOR",
    "')'",
    "end of input",
];

/// Parses `text` under `limits`.
pub(super) fn parse_text(text: &str, limits: ParseLimits) -> Result<Expr, ParseError> {
    if text.len() > limits.max_len {
        let offset = floor_char_boundary(text, limits.max_len);
        return Err(ParseError::new(
            text,
            offset,
            &["end of input"],
            format!("{} more bytes", text.len() - offset),
            format!(
                "expression is {} bytes long, more than the limit of {} bytes",
                text.len(),
                limits.max_len
            ),
        ));
    }
    Parser::new(text, limits)
        .and_then(|mut p| p.parse_all())
        .map_err(|e| *e)
}

struct Parser<'a> {
    text: &'a str,
    lexer: Lexer<'a>,
    /// The current (not yet consumed) token.
    tok: Token,
    depth: usize,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, limits: ParseLimits) -> PResult<Self> {
        let mut lexer = Lexer::new(text);
        let tok = lexer.next_token()?;
        Ok(Parser {
            text,
            lexer,
            tok,
            depth: 0,
            max_depth: limits.max_depth,
        })
    }

    fn advance(&mut self) -> PResult<()> {
        self.tok = self.lexer.next_token()?;
        Ok(())
    }

    fn at_keyword(&self, keyword: Keyword) -> bool {
        self.tok.kind == TokenKind::Keyword(keyword)
    }

    /// The source text of the current token.
    fn source(&self) -> &'a str {
        &self.text[self.tok.start..self.tok.end]
    }

    /// The current token as an error message names it.
    fn found(&self) -> String {
        let source = self.source();
        match &self.tok.kind {
            TokenKind::Eof => "end of input".to_owned(),
            TokenKind::Keyword(k) => format!("keyword {}", k.as_str()),
            TokenKind::Path(_) if source.starts_with('`') => format!("name {}", shorten(source)),
            TokenKind::Path(_) => format!("name `{}`", shorten(source)),
            TokenKind::Str(_) => format!("string {}", shorten(source)),
            TokenKind::Number(_) => format!("number {}", shorten(source)),
            TokenKind::LParen | TokenKind::RParen | TokenKind::Comma | TokenKind::Cmp(_) => {
                format!("'{source}'")
            }
        }
    }

    /// An error at the current token with a ready-made message.
    fn error_here(&self, expected: &[&str], message: String) -> Box<ParseError> {
        Box::new(ParseError::new(
            self.text,
            self.tok.start,
            expected,
            self.found(),
            message,
        ))
    }

    /// "expected {what}, found {current token}{hint}" at the current token.
    fn expected(&self, what: &str, expected: &[&str], hint: &str) -> Box<ParseError> {
        let message = format!("expected {what}, found {}{hint}", self.found());
        self.error_here(expected, message)
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> PResult<()> {
        if &self.tok.kind != kind {
            let shown = match kind {
                TokenKind::LParen => "'('",
                TokenKind::RParen => "')'",
                TokenKind::Comma => "','",
                _ => what,
            };
            return Err(self.expected(what, &[shown], ""));
        }
        self.advance()
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error_here(
                &[],
                format!(
                    "expression nests deeper than {} levels (each '(' and NOT counts one)",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    /// The whole input. Nesting lives on an explicit stack of open groups rather than on the
    /// call stack: one group per open parenthesis, plus the root.
    fn parse_all(&mut self) -> PResult<Expr> {
        let mut parents: Vec<Group> = Vec::new();
        let mut group = Group::new(0, 0);
        let mut after = "";
        loop {
            // An operand: { NOT } ( "(" ... | primary ).
            let mut nots = 0;
            while self.at_keyword(Keyword::Not) {
                self.enter()?;
                self.advance()?;
                nots += 1;
                after = " after NOT";
            }
            if self.tok.kind == TokenKind::LParen {
                let open = self.tok.start;
                self.enter()?;
                self.advance()?;
                parents.push(std::mem::replace(&mut group, Group::new(open, nots)));
                after = " after '('";
                continue;
            }
            let mut operand = wrap_in_nots(self.parse_primary(after)?, nots);
            self.depth -= nots;
            // What follows a complete operand: a connective, or the end of its group(s).
            loop {
                group.and_items.push(operand);
                match self.tok.kind {
                    TokenKind::Keyword(Keyword::And) => after = " after AND",
                    TokenKind::Keyword(Keyword::Xor) => {
                        group.close_and();
                        after = " after XOR";
                    }
                    TokenKind::Keyword(Keyword::Or) => {
                        group.close_xor();
                        after = " after OR";
                    }
                    _ => {
                        let Some(parent) = parents.pop() else {
                            return self.end_of_input(group.finish());
                        };
                        if self.tok.kind != TokenKind::RParen {
                            return Err(self.unclosed(group.open));
                        }
                        self.advance()?;
                        let closed = std::mem::replace(&mut group, parent);
                        let nots = closed.nots;
                        self.depth -= 1 + nots;
                        operand = wrap_in_nots(closed.finish(), nots);
                        continue;
                    }
                }
                self.advance()?;
                break;
            }
        }
    }

    /// The root group is complete: only the end of the input may follow.
    fn end_of_input(&self, expr: Expr) -> PResult<Expr> {
        let expected = ["AND", "OR", "XOR", "end of input"];
        match self.tok.kind {
            TokenKind::Eof => Ok(expr),
            TokenKind::RParen => {
                Err(self.error_here(&expected, "unmatched ')': no '(' is open here".to_owned()))
            }
            _ if self.at_keyword(Keyword::As) => {
                Err(self.error_here(&expected, "AS OF is not supported yet".to_owned()))
            }
            _ => Err(self.expected("AND, OR, XOR or end of input", &expected, "")),
        }
    }

    /// The group opened at byte `open` is complete but the current token is not its ')'.
    fn unclosed(&self, open: usize) -> Box<ParseError> {
        let expected = ["AND", "OR", "XOR", "')'"];
        if self.at_keyword(Keyword::As) {
            return self.error_here(&expected, "AS OF is not supported yet".to_owned());
        }
        let (line, column) = line_column(self.text, open);
        let what = format!("')' to close the '(' at line {line}, column {column}");
        self.expected(&what, &expected, "")
    }

    /// An operand that is not parenthesised: `ALL`, `KEYS(...)` or a predicate on a path.
    fn parse_primary(&mut self, after: &'static str) -> PResult<Expr> {
        match &self.tok.kind {
            TokenKind::Keyword(Keyword::All) => {
                self.advance()?;
                Ok(Expr::All)
            }
            TokenKind::Keyword(Keyword::Keys) => {
                self.advance()?;
                self.parse_keys()
            }
            &TokenKind::Keyword(
                keyword @ (Keyword::Did | Keyword::FirstDid | Keyword::LastDid | Keyword::Crowd),
            ) => {
                let called = self.text[self.tok.end..].trim_start().starts_with('(');
                if !called {
                    let message = format!(
                        "{} is a reserved word; write `{}` in backticks to use it as a field name",
                        keyword.as_str(),
                        self.source()
                    );
                    return Err(self.error_here(EXPR_STARTS, message));
                }
                if keyword == Keyword::Crowd {
                    let message =
                        "saved-crowd reference crowd(...) is not supported yet".to_owned();
                    return Err(self.error_here(EXPR_STARTS, message));
                }
                self.parse_behaviour(keyword)
            }
            TokenKind::Path(path) => {
                let path = path.clone();
                self.advance()?;
                self.parse_predicate(path)
            }
            TokenKind::Keyword(k) if !matches!(k, Keyword::And | Keyword::Or | Keyword::Xor) => {
                let hint = format!(
                    "; to use {} as a field name, write it in backticks: `{}`",
                    k.as_str(),
                    self.source()
                );
                Err(self.expected(&format!("an expression{after}"), EXPR_STARTS, &hint))
            }
            _ => Err(self.expected(&format!("an expression{after}"), EXPR_STARTS, "")),
        }
    }

    /// What follows a path: an operator, or nothing for a flag tag.
    fn parse_predicate(&mut self, path: Path) -> PResult<Expr> {
        match &self.tok.kind {
            &TokenKind::Cmp(op) => {
                let context = format!("a value after '{}'", self.source());
                self.advance()?;
                let value = self.parse_literal(&context)?;
                Ok(Expr::Compare { path, op, value })
            }
            TokenKind::Keyword(Keyword::In) => {
                self.advance()?;
                let values = self.parse_list("IN")?;
                Ok(Expr::In {
                    path,
                    values,
                    negated: false,
                })
            }
            TokenKind::Keyword(Keyword::Not) => {
                self.advance()?;
                if !self.at_keyword(Keyword::In) {
                    let hint = if self.at_keyword(Keyword::Between) || self.at_keyword(Keyword::Has)
                    {
                        "; negate the whole predicate instead: NOT (x BETWEEN a AND b)"
                    } else {
                        ""
                    };
                    return Err(self.expected("IN after NOT", &["IN"], hint));
                }
                self.advance()?;
                let values = self.parse_list("NOT IN")?;
                Ok(Expr::In {
                    path,
                    values,
                    negated: true,
                })
            }
            TokenKind::Keyword(Keyword::Between) => {
                self.advance()?;
                let low = self.parse_literal("a lower bound after BETWEEN")?;
                if !self.at_keyword(Keyword::And) {
                    return Err(self.expected("AND between the bounds of BETWEEN", &["AND"], ""));
                }
                self.advance()?;
                let high = self.parse_literal("an upper bound after BETWEEN ... AND")?;
                Ok(Expr::Between { path, low, high })
            }
            TokenKind::Keyword(Keyword::Has) => {
                self.advance()?;
                let mode = match self.tok.kind {
                    TokenKind::Keyword(Keyword::Any) => HasMode::Any,
                    TokenKind::Keyword(Keyword::All) => HasMode::All,
                    _ => {
                        let value = self.parse_literal("a value, ANY or ALL after HAS")?;
                        return Ok(Expr::Has {
                            path,
                            mode: HasMode::One,
                            values: vec![value],
                        });
                    }
                };
                self.advance()?;
                let construct = if mode == HasMode::Any {
                    "HAS ANY"
                } else {
                    "HAS ALL"
                };
                let values = self.parse_list(construct)?;
                Ok(Expr::Has { path, mode, values })
            }
            TokenKind::Keyword(Keyword::And | Keyword::Or | Keyword::Xor | Keyword::As)
            | TokenKind::RParen
            | TokenKind::Eof => Ok(Expr::Field(path)),
            _ => {
                let what = format!(
                    "an operator, AND, OR, XOR, ')' or end of input after field {}",
                    describe_path(&path)
                );
                let hint = if matches!(self.tok.kind, TokenKind::Str(_) | TokenKind::Number(_)) {
                    "; a comparison needs an operator, e.g. gender = 'female'"
                } else {
                    ""
                };
                Err(self.expected(&what, PATH_FOLLOWERS, hint))
            }
        }
    }

    /// `( literal { , literal } )` after `construct`.
    fn parse_list(&mut self, construct: &str) -> PResult<Vec<Literal>> {
        self.expect(&TokenKind::LParen, &format!("'(' after {construct}"))?;
        let context = format!("a value in the {construct} list");
        let mut values = vec![self.parse_literal(&context)?];
        loop {
            match self.tok.kind {
                TokenKind::Comma => {
                    self.advance()?;
                    values.push(self.parse_literal(&context)?);
                }
                TokenKind::RParen => {
                    self.advance()?;
                    return Ok(values);
                }
                _ => {
                    let what = format!("',' or ')' in the {construct} list");
                    return Err(self.expected(&what, &["','", "')'"], ""));
                }
            }
        }
    }

    /// `KEYS` has been consumed: `( key { , key } )`.
    fn parse_keys(&mut self) -> PResult<Expr> {
        self.expect(&TokenKind::LParen, "'(' after KEYS")?;
        let mut keys = Vec::new();
        loop {
            let key = match &self.tok.kind {
                TokenKind::Str(s) => Literal::Str(s.clone()),
                &TokenKind::Number(Literal::Int(n)) if n >= 0 => Literal::Int(n),
                _ => {
                    return Err(self.expected(
                        "a user key (a string or a non-negative integer) in KEYS",
                        &["a string", "a non-negative integer"],
                        "",
                    ));
                }
            };
            keys.push(key);
            self.advance()?;
            match self.tok.kind {
                TokenKind::Comma => self.advance()?,
                TokenKind::RParen => {
                    self.advance()?;
                    return Ok(Expr::Keys(keys));
                }
                _ => return Err(self.expected("',' or ')' in the KEYS list", &["','", "')'"], "")),
            }
        }
    }

    /// Whether the current token is the bare word `word` (any case), e.g. `days`.
    fn at_word(&self, word: &str) -> bool {
        matches!(&self.tok.kind, TokenKind::Path(_))
            && !self.source().starts_with('`')
            && self.source().eq_ignore_ascii_case(word)
    }

    /// Consumes the bare word `word` (or its singular/plural twin `alt`).
    fn expect_word(&mut self, word: &str, alt: &str, what: &str) -> PResult<()> {
        if self.at_word(word) || self.at_word(alt) {
            return self.advance();
        }
        Err(self.expected(what, &[word], ""))
    }

    /// A non-negative whole number.
    fn parse_count(&mut self, what: &str) -> PResult<u64> {
        match &self.tok.kind {
            TokenKind::Number(Literal::Int(n)) if *n >= 0 => {
                let n = *n as u64;
                self.advance()?;
                Ok(n)
            }
            _ => Err(self.expected(what, &["number"], "")),
        }
    }

    /// A number of days: a whole number in `0..=u32::MAX`.
    fn parse_days(&mut self, what: &str) -> PResult<u32> {
        let start = self.tok.start;
        let n = self.parse_count(what)?;
        u32::try_from(n).map_err(|_| {
            Box::new(ParseError::new(
                self.text,
                start,
                &["number"],
                n.to_string(),
                format!("{n} days is too many"),
            ))
        })
    }

    /// The length of a window: a number of days, at least 1.
    fn parse_window_days(&mut self, what: &str) -> PResult<u32> {
        let start = self.tok.start;
        let days = self.parse_days(what)?;
        if days == 0 {
            return Err(Box::new(ParseError::new(
                self.text,
                start,
                &["number"],
                "0".to_owned(),
                "a window holds at least one day".to_owned(),
            )));
        }
        Ok(days)
    }

    /// `DATE 'YYYY-MM-DD'`.
    fn parse_date(&mut self, what: &str) -> PResult<Date> {
        if !self.at_keyword(Keyword::Date) {
            return Err(self.expected(what, &["DATE"], ""));
        }
        match self.parse_literal(what)? {
            Literal::Date(d) => Ok(d),
            _ => Err(self.expected(what, &["DATE"], "")),
        }
    }

    /// `did(event, window) [count]`, `first_did(event) when`, `last_did(event) when`; the
    /// current token is the keyword.
    fn parse_behaviour(&mut self, keyword: Keyword) -> PResult<Expr> {
        let name = keyword.as_str();
        self.advance()?;
        self.expect(&TokenKind::LParen, &format!("'(' after {name}"))?;
        let event = match &self.tok.kind {
            TokenKind::Path(path) => path.clone(),
            _ => return Err(self.expected("an event name", &["event"], "")),
        };
        self.advance()?;
        if keyword == Keyword::Did {
            self.expect(
                &TokenKind::Comma,
                "',' and a window after the event, like did(purchase, last 7 days)",
            )?;
            let window = self.parse_window()?;
            self.expect(&TokenKind::RParen, "')' after the window")?;
            let count = if let TokenKind::Cmp(op) = self.tok.kind {
                self.advance()?;
                let n = self.parse_count("a number of times")?;
                if self.at_word("times") || self.at_word("time") {
                    self.advance()?;
                }
                Some(DidCount {
                    op,
                    n,
                    measure: Measure::Times,
                })
            } else if self.at_word("on") {
                self.advance()?;
                let TokenKind::Cmp(op) = self.tok.kind else {
                    return Err(self.expected(
                        "a comparison after ON, like ON >= 3 DAYS",
                        &[">="],
                        "",
                    ));
                };
                self.advance()?;
                let n = self.parse_count("a number of days")?;
                self.expect_word("days", "day", "DAYS after the number of days")?;
                Some(DidCount {
                    op,
                    n,
                    measure: Measure::Days,
                })
            } else {
                None
            };
            return Ok(Expr::Did {
                event,
                window,
                count,
            });
        }
        self.expect(&TokenKind::RParen, "')' after the event")?;
        let which = if keyword == Keyword::FirstDid {
            Occurrence::First
        } else {
            Occurrence::Last
        };
        let when = if self.at_word("within") {
            self.advance()?;
            let days = self.parse_window_days("a number of days after WITHIN")?;
            self.expect_word("days", "day", "DAYS after the number of days")?;
            When::Within(days)
        } else if let TokenKind::Cmp(op) = self.tok.kind {
            self.advance()?;
            if self.at_keyword(Keyword::Date) {
                When::Date {
                    op,
                    date: self.parse_date("a date")?,
                }
            } else {
                let days = self.parse_days("a number of days or a DATE")?;
                self.expect_word("days", "day", "DAYS AGO after the number of days")?;
                self.expect_word("ago", "ago", "AGO after DAYS")?;
                When::DaysAgo { op, days }
            }
        } else {
            return Err(self.expected(
                &format!("a test after {name}(...): a comparison with N DAYS AGO or a DATE, or WITHIN N DAYS"),
                &[">", "WITHIN"],
                "",
            ));
        };
        Ok(Expr::Occurred { which, event, when })
    }

    /// `last N days [ending DATE 'x']`, `DATE 'a' TO DATE 'b'` or `ever`.
    fn parse_window(&mut self) -> PResult<Window> {
        if self.at_word("last") {
            self.advance()?;
            let days = self.parse_window_days("a number of days after LAST")?;
            self.expect_word("days", "day", "DAYS after the number of days")?;
            let ending = if self.at_word("ending") {
                self.advance()?;
                Some(self.parse_date("a date after ENDING")?)
            } else {
                None
            };
            Ok(Window::Last { days, ending })
        } else if self.at_word("ever") {
            self.advance()?;
            Ok(Window::Ever)
        } else if self.at_keyword(Keyword::Date) {
            let from = self.parse_date("a date")?;
            self.expect_word("to", "to", "TO and the last date of the window")?;
            let to = self.parse_date("the last date of the window")?;
            Ok(Window::Range { from, to })
        } else {
            Err(self.expected(
                "a window: LAST N DAYS, DATE 'a' TO DATE 'b' or EVER",
                &["LAST", "DATE", "EVER"],
                "",
            ))
        }
    }

    /// A value; `context` says which ("a value after '='").
    fn parse_literal(&mut self, context: &str) -> PResult<Literal> {
        let literal = match &self.tok.kind {
            TokenKind::Str(s) => Literal::Str(s.clone()),
            TokenKind::Number(n) => n.clone(),
            TokenKind::Keyword(Keyword::True) => Literal::Bool(true),
            TokenKind::Keyword(Keyword::False) => Literal::Bool(false),
            TokenKind::Keyword(Keyword::Date) => {
                self.advance()?;
                let date = match &self.tok.kind {
                    TokenKind::Str(s) => Date::parse_iso(s).ok_or_else(|| {
                        self.error_here(
                            &["'YYYY-MM-DD'"],
                            format!(
                                "invalid date {}: expected a calendar date written 'YYYY-MM-DD'",
                                describe_text(s)
                            ),
                        )
                    })?,
                    _ => {
                        return Err(self.expected(
                            "a date string after DATE, like DATE '2026-11-25'",
                            &["'YYYY-MM-DD'"],
                            "",
                        ));
                    }
                };
                Literal::Date(date)
            }
            TokenKind::Path(_) if !self.source().starts_with('`') => {
                let hint = format!(
                    "; strings are written in single quotes: '{}'",
                    self.source()
                );
                return Err(self.expected(context, VALUE_STARTS, &hint));
            }
            _ => return Err(self.expected(context, VALUE_STARTS, "")),
        };
        self.advance()?;
        Ok(literal)
    }
}

/// An open parenthesis (or the whole input) and the operands read so far, by binding level.
///
/// `a OR b XOR c AND d` fills `or_items` with `a`, `xor_items` with `b`, `and_items` with `c`
/// and `d`; a looser connective closes the tighter levels into one operand of its own level.
#[derive(Debug)]
struct Group {
    /// Byte offset of the '(' (0 for the root).
    open: usize,
    /// How many NOTs precede the '('; they apply to the group's result.
    nots: usize,
    or_items: Vec<Expr>,
    xor_items: Vec<Expr>,
    and_items: Vec<Expr>,
}

impl Group {
    fn new(open: usize, nots: usize) -> Group {
        Group {
            open,
            nots,
            or_items: Vec::new(),
            xor_items: Vec::new(),
            and_items: Vec::new(),
        }
    }

    /// Ends the current AND chain: it becomes one operand of the XOR level.
    fn close_and(&mut self) {
        let and = join(std::mem::take(&mut self.and_items), Expr::And);
        self.xor_items.push(and);
    }

    /// Ends the current XOR chain: it becomes one operand of the OR level.
    fn close_xor(&mut self) {
        self.close_and();
        let xor = join(std::mem::take(&mut self.xor_items), Expr::Xor);
        self.or_items.push(xor);
    }

    fn finish(mut self) -> Expr {
        self.close_xor();
        join(std::mem::take(&mut self.or_items), Expr::Or)
    }
}

/// One operand as itself, several as the connective `make` over them.
fn join(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    make(items)
}

fn wrap_in_nots(mut expr: Expr, nots: usize) -> Expr {
    for _ in 0..nots {
        expr = Expr::Not(Box::new(expr));
    }
    expr
}

/// `path` as written in the text form, in backticks for messages.
fn describe_path(path: &Path) -> String {
    let shown = path.to_string();
    if shown.starts_with('`') {
        shown
    } else {
        format!("`{shown}`")
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::{CmpOp, Decimal};
    use super::super::{parse, parse_with_limits};
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
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

    fn ok(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text}\n{}", e.render(text)))
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(e) => panic!("{text}: parsed as {e:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error position and that the message contains `needle`.
    #[track_caller]
    fn assert_err(text: &str, line: u32, column: u32, needle: &str) {
        let e = err(text);
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }

    #[test]
    fn design_example() {
        let text = "gender = 'female' AND age BETWEEN 18 AND 30 AND city IN ('Beijing', 'Shanghai') \
                    AND (interest HAS 'sports' OR vip) AND NOT risk/blacklist";
        let expected = Expr::And(vec![
            Expr::Compare {
                path: p("gender"),
                op: CmpOp::Eq,
                value: s("female"),
            },
            Expr::Between {
                path: p("age"),
                low: Literal::Int(18),
                high: Literal::Int(30),
            },
            Expr::In {
                path: p("city"),
                values: vec![s("Beijing"), s("Shanghai")],
                negated: false,
            },
            Expr::Or(vec![
                Expr::Has {
                    path: p("interest"),
                    mode: HasMode::One,
                    values: vec![s("sports")],
                },
                field("vip"),
            ]),
            Expr::Not(Box::new(field("risk/blacklist"))),
        ]);
        assert_eq!(ok(text), expected);
    }

    #[test]
    fn comparisons() {
        let cases = [
            ("a = 1", CmpOp::Eq),
            ("a != 1", CmpOp::Ne),
            ("a <> 1", CmpOp::Ne),
            ("a < 1", CmpOp::Lt),
            ("a <= 1", CmpOp::Le),
            ("a > 1", CmpOp::Gt),
            ("a>=1", CmpOp::Ge),
        ];
        for (text, op) in cases {
            assert_eq!(
                ok(text),
                Expr::Compare {
                    path: p("a"),
                    op,
                    value: Literal::Int(1)
                }
            );
        }
    }

    #[test]
    fn literals() {
        let value = |text: &str| match ok(&format!("x = {text}")) {
            Expr::Compare { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(value("'it''s'"), s("it's"));
        assert_eq!(value("-42"), Literal::Int(-42));
        assert_eq!(
            value("12.50"),
            Literal::Decimal(Decimal::new(1250, 2).unwrap())
        );
        assert_eq!(
            value("-0.05"),
            Literal::Decimal(Decimal::new(-5, 2).unwrap())
        );
        assert_eq!(value("true"), Literal::Bool(true));
        assert_eq!(value("FALSE"), Literal::Bool(false));
        assert_eq!(
            value("date '2024-02-29'"),
            Literal::Date(Date::new(2024, 2, 29).unwrap())
        );
        assert_eq!(value("'2026-11-25'"), s("2026-11-25"));
    }

    #[test]
    fn in_and_not_in() {
        assert_eq!(
            ok("city IN ('a')"),
            Expr::In {
                path: p("city"),
                values: vec![s("a")],
                negated: false
            }
        );
        assert_eq!(
            ok("city not in ( 'a' , 2 , TRUE )"),
            Expr::In {
                path: p("city"),
                values: vec![s("a"), Literal::Int(2), Literal::Bool(true)],
                negated: true,
            }
        );
    }

    #[test]
    fn between_binds_its_and() {
        assert_eq!(
            ok("age BETWEEN 18 AND 30 AND vip"),
            Expr::And(vec![
                Expr::Between {
                    path: p("age"),
                    low: Literal::Int(18),
                    high: Literal::Int(30)
                },
                field("vip"),
            ])
        );
        assert_eq!(
            ok("d between date '2026-01-01' and date '2026-12-31'"),
            Expr::Between {
                path: p("d"),
                low: Literal::Date(Date::new(2026, 1, 1).unwrap()),
                high: Literal::Date(Date::new(2026, 12, 31).unwrap()),
            }
        );
    }

    #[test]
    fn has_modes() {
        assert_eq!(
            ok("interest HAS 'sports'"),
            Expr::Has {
                path: p("interest"),
                mode: HasMode::One,
                values: vec![s("sports")]
            }
        );
        assert_eq!(
            ok("interest HAS ANY ('a', 'b')"),
            Expr::Has {
                path: p("interest"),
                mode: HasMode::Any,
                values: vec![s("a"), s("b")]
            }
        );
        assert_eq!(
            ok("interest has all ('a')"),
            Expr::Has {
                path: p("interest"),
                mode: HasMode::All,
                values: vec![s("a")]
            }
        );
    }

    #[test]
    fn all_keys_and_fields() {
        assert_eq!(ok("ALL"), Expr::All);
        assert_eq!(
            ok("all AND NOT vip"),
            Expr::And(vec![Expr::All, Expr::Not(Box::new(field("vip")))])
        );
        assert_eq!(ok("KEYS('u1', 'u2')"), Expr::Keys(vec![s("u1"), s("u2")]));
        assert_eq!(
            ok("keys (1, 0)"),
            Expr::Keys(vec![Literal::Int(1), Literal::Int(0)])
        );
        assert_eq!(ok("`odd name/2fa-on`"), field("odd name/2fa-on"));
        assert_eq!(ok("`did`"), field("did"));
        assert_eq!(ok("Not/Keys"), field("Not/Keys"));
    }

    #[test]
    fn chains_flatten_but_parentheses_nest() {
        let (a, b, c) = (field("a"), field("b"), field("c"));
        assert_eq!(
            ok("a AND b AND c"),
            Expr::And(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            ok("a or b or c"),
            Expr::Or(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            ok("a XOR b xor c"),
            Expr::Xor(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            ok("a AND (b AND c)"),
            Expr::And(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            ok("(a AND b) AND c"),
            Expr::And(vec![Expr::And(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(ok("((a))"), a);
    }

    #[test]
    fn precedence_or_xor_and_not() {
        let (a, b, c, d) = (field("a"), field("b"), field("c"), field("d"));
        let not = |e: Expr| Expr::Not(Box::new(e));
        assert_eq!(
            ok("a OR b XOR c AND NOT d"),
            Expr::Or(vec![
                a.clone(),
                Expr::Xor(vec![b.clone(), Expr::And(vec![c.clone(), not(d.clone())])]),
            ])
        );
        assert_eq!(
            ok("a AND b OR c AND d"),
            Expr::Or(vec![
                Expr::And(vec![a.clone(), b.clone()]),
                Expr::And(vec![c.clone(), d.clone()]),
            ])
        );
        assert_eq!(
            ok("NOT a AND b"),
            Expr::And(vec![not(a.clone()), b.clone()])
        );
        assert_eq!(
            ok("NOT (a AND b)"),
            not(Expr::And(vec![a.clone(), b.clone()]))
        );
        assert_eq!(ok("NOT NOT a"), not(not(a.clone())));
        assert_eq!(
            ok("NOT x = 1"),
            not(Expr::Compare {
                path: p("x"),
                op: CmpOp::Eq,
                value: Literal::Int(1)
            })
        );
    }

    #[test]
    fn whitespace_newlines_and_comments() {
        let text = "-- women in the two big cities\n\
                    gender = 'female'   -- from the CRM\n\
                    \tAND city IN ('Beijing',\n 'Shanghai')\n";
        assert_eq!(
            ok(text),
            Expr::And(vec![
                Expr::Compare {
                    path: p("gender"),
                    op: CmpOp::Eq,
                    value: s("female")
                },
                Expr::In {
                    path: p("city"),
                    values: vec![s("Beijing"), s("Shanghai")],
                    negated: false
                },
            ])
        );
    }

    #[test]
    fn error_display_and_fields() {
        let e = err("gender = 'female' AND age =");
        assert_eq!(
            e.to_string(),
            "line 1, column 28: expected a value after '=', found end of input"
        );
        assert_eq!(e.offset, 27);
        assert_eq!(e.found, "end of input");
        assert_eq!(e.expected, VALUE_STARTS);
        let e = err("age >= 18 AND\n  city IN ('a' 'b')");
        assert_eq!(
            e.to_string(),
            "line 2, column 16: expected ',' or ')' in the IN list, found string 'b'"
        );
        assert_eq!(e.expected, ["','", "')'"]);
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("line 2"));
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let cases: &[(&str, u32, u32, &str)] = &[
            ("", 1, 1, "expected an expression, found end of input"),
            ("   ", 1, 4, "expected an expression, found end of input"),
            (
                "a AND",
                1,
                6,
                "expected an expression after AND, found end of input",
            ),
            (
                "a or\n\n  or b",
                3,
                3,
                "expected an expression after OR, found keyword OR",
            ),
            (
                "a XOR )",
                1,
                7,
                "expected an expression after XOR, found ')'",
            ),
            ("NOT", 1, 4, "expected an expression after NOT"),
            ("( )", 1, 3, "expected an expression after '('"),
            (
                "(a AND b",
                1,
                9,
                "expected ')' to close the '(' at line 1, column 1",
            ),
            (
                "x AND (\n  a OR b = 1\n  c",
                3,
                3,
                "to close the '(' at line 1, column 7, found name `c`",
            ),
            ("a)", 1, 2, "unmatched ')'"),
            (
                "a b",
                1,
                3,
                "expected an operator, AND, OR, XOR, ')' or end of input after field `a`",
            ),
            ("gender 'f'", 1, 8, "a comparison needs an operator"),
            ("x = ", 1, 5, "expected a value after '='"),
            (
                "x <> AND",
                1,
                6,
                "expected a value after '<>', found keyword AND",
            ),
            (
                "x = female",
                1,
                5,
                "strings are written in single quotes: 'female'",
            ),
            ("x IN 'a'", 1, 6, "expected '(' after IN, found string 'a'"),
            (
                "x IN ()",
                1,
                7,
                "expected a value in the IN list, found ')'",
            ),
            ("x IN ('a',)", 1, 11, "expected a value in the IN list"),
            (
                "x NOT IN ('a'",
                1,
                14,
                "expected ',' or ')' in the NOT IN list, found end of input",
            ),
            ("x NOT y", 1, 7, "expected IN after NOT, found name `y`"),
            ("x NOT BETWEEN 1 AND 2", 1, 7, "NOT (x BETWEEN a AND b)"),
            (
                "x BETWEEN 1",
                1,
                12,
                "expected AND between the bounds of BETWEEN",
            ),
            (
                "x BETWEEN 1 OR 2",
                1,
                13,
                "expected AND between the bounds of BETWEEN, found keyword OR",
            ),
            ("x BETWEEN AND 2", 1, 11, "a lower bound after BETWEEN"),
            (
                "x BETWEEN 1 AND",
                1,
                16,
                "an upper bound after BETWEEN ... AND",
            ),
            ("i HAS", 1, 6, "a value, ANY or ALL after HAS"),
            ("i HAS ANY 'a'", 1, 11, "expected '(' after HAS ANY"),
            ("i HAS ALL ()", 1, 12, "a value in the HAS ALL list"),
            ("KEYS", 1, 5, "expected '(' after KEYS"),
            ("KEYS()", 1, 6, "a user key"),
            (
                "KEYS(-1)",
                1,
                6,
                "a user key (a string or a non-negative integer)",
            ),
            ("KEYS('a', 1.5)", 1, 11, "a user key"),
            ("KEYS('a' 'b')", 1, 10, "',' or ')' in the KEYS list"),
            ("d = DATE '2026-02-30'", 1, 10, "invalid date '2026-02-30'"),
            ("d = DATE 20260101", 1, 10, "a date string after DATE"),
            (
                "x = 1 y",
                1,
                7,
                "expected AND, OR, XOR or end of input, found name `y`",
            ),
            ("a AND null", 1, 7, "write it in backticks: `null`"),
            (
                "a AND IN",
                1,
                7,
                "expected an expression after AND, found keyword IN",
            ),
            (
                "a = 'x' AND `` = 1",
                1,
                13,
                "quoted field name cannot be empty",
            ),
        ];
        for &(text, line, column, needle) in cases {
            assert_err(text, line, column, needle);
        }
    }

    #[test]
    fn the_first_error_in_reading_order_wins() {
        assert_err("x = = 'unterminated", 1, 5, "expected a value after '='");
        assert_err("x = 'unterminated", 1, 5, "unterminated string");
        assert_err("a AND\n  b #", 2, 5, "unexpected character '#'");
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        assert_err("city = '北京' AND", 1, 16, "after AND");
        assert_err("'北京'\n北", 1, 1, "expected an expression, found string");
        assert_err("a = '北京' b", 1, 10, "found name `b`");
    }

    #[test]
    fn behaviour_predicates() {
        let date = |y, m, d| Date::new(y, m, d).unwrap();
        assert_eq!(
            ok("did(purchase, last 7 days) >= 2 AND NOT DID(login, LAST 30 DAYS)"),
            Expr::And(vec![
                Expr::Did {
                    event: p("purchase"),
                    window: Window::Last {
                        days: 7,
                        ending: None
                    },
                    count: Some(DidCount {
                        op: CmpOp::Ge,
                        n: 2,
                        measure: Measure::Times
                    }),
                },
                Expr::Not(Box::new(Expr::Did {
                    event: p("login"),
                    window: Window::Last {
                        days: 30,
                        ending: None
                    },
                    count: None,
                })),
            ])
        );
        assert_eq!(
            ok("did(app/open, last 1 day ending DATE '2026-11-20') on < 3 days"),
            Expr::Did {
                event: p("app/open"),
                window: Window::Last {
                    days: 1,
                    ending: Some(date(2026, 11, 20))
                },
                count: Some(DidCount {
                    op: CmpOp::Lt,
                    n: 3,
                    measure: Measure::Days
                }),
            }
        );
        assert_eq!(
            ok("did(x, DATE '2026-11-01' TO DATE '2026-11-07') = 1 times"),
            Expr::Did {
                event: p("x"),
                window: Window::Range {
                    from: date(2026, 11, 1),
                    to: date(2026, 11, 7)
                },
                count: Some(DidCount {
                    op: CmpOp::Eq,
                    n: 1,
                    measure: Measure::Times
                }),
            }
        );
        assert_eq!(
            ok("last_did(login) > 30 days ago"),
            Expr::Occurred {
                which: Occurrence::Last,
                event: p("login"),
                when: When::DaysAgo {
                    op: CmpOp::Gt,
                    days: 30
                },
            }
        );
        assert_eq!(
            ok("first_did(pay) within 7 days"),
            Expr::Occurred {
                which: Occurrence::First,
                event: p("pay"),
                when: When::Within(7),
            }
        );
        assert_eq!(
            ok("first_did(pay) <= DATE '2026-11-02'"),
            Expr::Occurred {
                which: Occurrence::First,
                event: p("pay"),
                when: When::Date {
                    op: CmpOp::Le,
                    date: date(2026, 11, 2)
                },
            }
        );
        assert_eq!(
            ok("did(x, ever)"),
            Expr::Did {
                event: p("x"),
                window: Window::Ever,
                count: None
            }
        );
        // The window words stay usable as field names.
        assert_eq!(
            ok("last AND days"),
            Expr::And(vec![field("last"), field("days")])
        );
    }

    #[test]
    fn malformed_behaviour_predicates_point_at_the_problem() {
        assert_err("did(purchase)", 1, 13, "',' and a window");
        assert_err("did(purchase, 7 days)", 1, 15, "a window: LAST N DAYS");
        assert_err(
            "did(purchase, last days)",
            1,
            20,
            "a number of days after LAST",
        );
        assert_err("did(purchase, last 7)", 1, 21, "DAYS after the number");
        assert_err(
            "did(p, last 7 days) on 3 days",
            1,
            24,
            "a comparison after ON",
        );
        assert_err("last_did(login) > 30 days", 1, 26, "AGO after DAYS");
        assert_err("last_did(login)", 1, 16, "a test after LAST_DID");
        assert_err("first_did('x') within 3 days", 1, 11, "an event name");
        assert_err("did(p, last -1 days)", 1, 13, "a number of days");
    }

    #[test]
    fn future_predicates_are_not_supported_yet() {
        assert_err(
            "a AND crowd('spring_campaign')",
            1,
            7,
            "saved-crowd reference crowd(...) is not supported yet",
        );
        assert_err(
            "did AND a",
            1,
            1,
            "DID is a reserved word; write `did` in backticks",
        );
        assert_err("vip AS OF '2026-11-25'", 1, 5, "AS OF is not supported yet");
        assert_err("(vip AS OF 'x')", 1, 6, "AS OF is not supported yet");
        assert_err("x = 1 AS OF 'x'", 1, 7, "AS OF is not supported yet");
    }

    #[test]
    fn length_limit() {
        let limits = ParseLimits {
            max_len: 10,
            ..ParseLimits::DEFAULT
        };
        assert_eq!(
            parse_with_limits("a AND b", limits),
            Ok(Expr::And(vec![field("a"), field("b")]))
        );
        assert_eq!(
            parse_with_limits("aaaaaaaaaa", limits),
            Ok(field("aaaaaaaaaa"))
        );
        let e = parse_with_limits("a AND b AND c", limits).unwrap_err();
        assert_eq!((e.offset, e.line, e.column), (10, 1, 11));
        assert!(
            e.message
                .contains("13 bytes long, more than the limit of 10 bytes"),
            "{e}"
        );
        // The position is moved back to a char boundary.
        let e = parse_with_limits(
            "'ééééé'",
            ParseLimits {
                max_len: 4,
                ..limits
            },
        )
        .unwrap_err();
        assert_eq!((e.offset, e.column), (3, 3));
        let big = "a AND ".repeat(20_000) + "a";
        assert!(
            err(&big)
                .message
                .contains("more than the limit of 65536 bytes")
        );
    }

    #[test]
    fn depth_limit_counts_parentheses_and_not() {
        let limits = ParseLimits {
            max_depth: 3,
            ..ParseLimits::DEFAULT
        };
        assert!(parse_with_limits("(((a)))", limits).is_ok());
        assert!(parse_with_limits("NOT (NOT a)", limits).is_ok());
        assert!(parse_with_limits("(a) AND (b) AND ((c))", limits).is_ok());
        let e = parse_with_limits("((((a))))", limits).unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(e.message.contains("nests deeper than 3 levels"), "{e}");
        let e = parse_with_limits("NOT NOT (NOT a)", limits).unwrap_err();
        assert_eq!(e.column, 10);
        let default_max = ParseLimits::DEFAULT.max_depth;
        let at_limit = format!("{}a{}", "(".repeat(default_max), ")".repeat(default_max));
        assert_eq!(ok(&at_limit), field("a"));
        let nots = format!("{}a", "NOT ".repeat(default_max));
        assert!(matches!(ok(&nots), Expr::Not(_)));
        let over = format!(
            "{}a{}",
            "(".repeat(default_max + 1),
            ")".repeat(default_max + 1)
        );
        assert_err(
            &over,
            1,
            u32::try_from(default_max).unwrap() + 1,
            "nests deeper than 256",
        );
    }

    #[test]
    fn deep_hostile_input_is_an_error_not_a_stack_overflow() {
        let limits = ParseLimits {
            max_len: usize::MAX,
            max_depth: 256,
        };
        for text in [
            "(".repeat(1_000_000),
            "NOT ".repeat(1_000_000),
            "(NOT ".repeat(300_000),
        ] {
            let e = parse_with_limits(&text, limits).unwrap_err();
            assert!(e.message.contains("nests deeper"), "{e}");
        }
    }

    #[test]
    fn render_shows_a_caret() {
        let text = "age >= 18 AND\n\tcity IN 'x'";
        let e = err(text);
        assert_eq!(
            e.render(text),
            "line 2, column 10: expected '(' after IN, found string 'x'\n  \tcity IN 'x'\n  \t        ^"
        );
    }

    #[test]
    fn limits_default() {
        assert_eq!(
            ParseLimits::default(),
            ParseLimits {
                max_len: 65536,
                max_depth: 256
            }
        );
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

    /// Fragments that make near-valid token soups.
    const FRAGMENTS: &[&str] = &[
        "a",
        "interest/sports",
        "`odd/na``me`",
        "`",
        "'",
        "'x'",
        "'it''s'",
        "''",
        "(",
        ")",
        ",",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "!",
        "AND",
        "or",
        "XOR",
        "NOT",
        "IN",
        "BETWEEN",
        "HAS",
        "ANY",
        "ALL",
        "KEYS",
        "TRUE",
        "false",
        "DATE",
        "'2026-02-29'",
        "'2024-02-29'",
        "0",
        "-7",
        "12.50",
        "-",
        ".",
        "9223372036854775808",
        "did",
        "crowd",
        "AS",
        "OF",
        "NULL",
        "/",
        "--",
        "\n",
        " ",
        "\t",
        "北",
        "é",
        "#",
        "\u{0}",
        "x/",
        "a/b/c",
    ];

    fn soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            (prop::sample::select(FRAGMENTS), prop::bool::weighted(0.7)),
            0..40,
        )
        .prop_map(|parts| {
            parts
                .into_iter()
                .fold(String::new(), |mut out, (frag, space)| {
                    out.push_str(frag);
                    if space {
                        out.push(' ');
                    }
                    out
                })
        })
    }

    /// Whatever parses must satisfy the tree invariants and print to text that parses back.
    fn check_parsed(text: &str) -> Result<(), TestCaseError> {
        let limits = ParseLimits {
            max_len: 512,
            max_depth: 8,
        };
        if let Ok(expr) = parse_with_limits(text, limits) {
            prop_assert_eq!(expr.check(), Ok(()));
            let printed = expr.to_string();
            prop_assert_eq!(parse(&printed), Ok(expr), "printed as {:?}", printed);
        } else if let Err(e) = parse_with_limits(text, limits) {
            prop_assert!(e.offset <= text.len());
            prop_assert!(text.is_char_boundary(e.offset));
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(!e.message.is_empty());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config(2000, 0x5eed_0001))]

        #[test]
        fn random_strings_never_panic(text in "\\PC{0,80}") {
            check_parsed(&text)?;
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            check_parsed(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn token_soups_never_panic(text in soup()) {
            check_parsed(&text)?;
        }
    }

    #[test]
    fn token_soups_reach_the_parser() {
        // Guards the fuzz tests against only ever producing lexer errors: a fixed-seed sample of
        // soups must include successful parses and parser (not lexer) errors.
        let mut runner = proptest::test_runner::TestRunner::new(config(1, 0x5eed_0002));
        let (mut parsed, mut failed) = (0, 0);
        for _ in 0..2000 {
            let text = soup().new_tree(&mut runner).unwrap().current();
            match parse(&text) {
                Ok(_) => parsed += 1,
                Err(e) if e.message.starts_with("expected") => failed += 1,
                Err(_) => {}
            }
        }
        eprintln!("{parsed} parsed, {failed} parser errors");
        assert!(parsed >= 10, "only {parsed} soups parsed");
        assert!(failed >= 200, "only {failed} soups reached a parser error");
    }
}
