//! Tokens of the crowd-expression text form.
//!
//! The lexer is pulled one token at a time by the parser, so the first error in reading order is
//! the one reported. Offsets are byte offsets into the input.
//!
//! ```text
//! whitespace = any char::is_whitespace ;  comment = "--" { any char but newline } ;
//! name       = segment { "/" segment } ;              (no spaces around "/")
//! segment    = ( letter | "_" ) { letter | digit | "_" } ;   (ASCII letters and digits)
//! quoted     = "`" { any char but "`" | "``" } "`" ;  (a whole path: "a b/c-d")
//! string     = "'" { any char but "'" | "''" } "'" ;
//! number     = [ "-" ] digit { digit } [ "." digit { digit } ] ;
//! symbol     = "(" | ")" | "," | "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
//! ```
//!
//! A name of one segment that matches a keyword (case-insensitively) is that keyword; a name of
//! several segments is always a path (`not/x` is a path). Reserved words that start no construct
//! yet (`AS`, `OF`, `IS`, `NULL`, `DID`, `FIRST_DID`, `LAST_DID`, `CROWD`) are keywords already,
//! so that text written today keeps its meaning when they gain one; such names are written in
//! backticks.

use super::ast::{CmpOp, Decimal, Literal, MAX_DECIMAL_SCALE, Path, PathError};
use super::parse::ParseError;

/// A keyword; matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Xor,
    Not,
    In,
    Between,
    Has,
    Any,
    All,
    Keys,
    True,
    False,
    Date,
    As,
    Of,
    Is,
    Null,
    Did,
    FirstDid,
    LastDid,
    Crowd,
}

const KEYWORDS: [Keyword; 21] = [
    Keyword::And,
    Keyword::Or,
    Keyword::Xor,
    Keyword::Not,
    Keyword::In,
    Keyword::Between,
    Keyword::Has,
    Keyword::Any,
    Keyword::All,
    Keyword::Keys,
    Keyword::True,
    Keyword::False,
    Keyword::Date,
    Keyword::As,
    Keyword::Of,
    Keyword::Is,
    Keyword::Null,
    Keyword::Did,
    Keyword::FirstDid,
    Keyword::LastDid,
    Keyword::Crowd,
];

impl Keyword {
    /// The canonical (upper-case) spelling.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Xor => "XOR",
            Keyword::Not => "NOT",
            Keyword::In => "IN",
            Keyword::Between => "BETWEEN",
            Keyword::Has => "HAS",
            Keyword::Any => "ANY",
            Keyword::All => "ALL",
            Keyword::Keys => "KEYS",
            Keyword::True => "TRUE",
            Keyword::False => "FALSE",
            Keyword::Date => "DATE",
            Keyword::As => "AS",
            Keyword::Of => "OF",
            Keyword::Is => "IS",
            Keyword::Null => "NULL",
            Keyword::Did => "DID",
            Keyword::FirstDid => "FIRST_DID",
            Keyword::LastDid => "LAST_DID",
            Keyword::Crowd => "CROWD",
        }
    }

    /// The keyword spelled `word`, ignoring ASCII case.
    pub(super) fn from_word(word: &str) -> Option<Keyword> {
        KEYWORDS
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A field path, bare or in backticks.
    Path(Path),
    Keyword(Keyword),
    /// A string literal, unescaped.
    Str(String),
    /// A number literal, already range-checked ([`Literal::Int`] or [`Literal::Decimal`]).
    Number(Literal),
    LParen,
    RParen,
    Comma,
    Cmp(CmpOp),
    Eof,
}

/// A token and its byte span in the input.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Whether `c` may start a bare path segment.
pub(super) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether `c` may continue a bare path segment.
pub(super) fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `segment` can be written without backticks as one segment of a longer path.
pub(super) fn is_bare_segment(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_continue)
}

/// Splits input text into tokens on demand.
#[derive(Debug)]
pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

type LexResult<T> = Result<T, Box<ParseError>>;

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, byte_offset: usize) -> Option<char> {
        self.text.get(self.pos + byte_offset..)?.chars().next()
    }

    fn error(
        &self,
        offset: usize,
        expected: &[&str],
        found: String,
        message: String,
    ) -> Box<ParseError> {
        Box::new(ParseError::new(self.text, offset, expected, found, message))
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                Some('-') if self.peek_at(1) == Some('-') => {
                    let rest = &self.text[self.pos..];
                    self.pos += rest.find('\n').unwrap_or(rest.len());
                }
                _ => return,
            }
        }
    }

    /// The next token; [`TokenKind::Eof`] (repeatedly) at the end.
    pub(super) fn next_token(&mut self) -> LexResult<Token> {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                start,
                end: start,
            });
        };
        let (kind, len) = match c {
            '(' => (TokenKind::LParen, 1),
            ')' => (TokenKind::RParen, 1),
            ',' => (TokenKind::Comma, 1),
            '=' => (TokenKind::Cmp(CmpOp::Eq), 1),
            '<' => match self.peek_at(1) {
                Some('=') => (TokenKind::Cmp(CmpOp::Le), 2),
                Some('>') => (TokenKind::Cmp(CmpOp::Ne), 2),
                _ => (TokenKind::Cmp(CmpOp::Lt), 1),
            },
            '>' => match self.peek_at(1) {
                Some('=') => (TokenKind::Cmp(CmpOp::Ge), 2),
                _ => (TokenKind::Cmp(CmpOp::Gt), 1),
            },
            '!' if self.peek_at(1) == Some('=') => (TokenKind::Cmp(CmpOp::Ne), 2),
            '\'' => return self.string(),
            '`' => return self.quoted_path(),
            '-' | '0'..='9' => return self.number(),
            c if is_ident_start(c) => return self.name(),
            c => return Err(self.unexpected_char(start, c)),
        };
        self.pos += len;
        Ok(Token {
            kind,
            start,
            end: self.pos,
        })
    }

    fn unexpected_char(&self, offset: usize, c: char) -> Box<ParseError> {
        let hint = match c {
            '!' => "; negation is written NOT",
            '&' | '|' => "; use the keywords AND, OR, XOR",
            '"' => "; strings are written in single quotes: 'text'",
            '.' => "; numbers start with a digit: 0.5",
            '/' => "; a path is written without spaces: interest/sports",
            _ => "",
        };
        let found = describe_char(c);
        self.error(
            offset,
            &[],
            found.clone(),
            format!("unexpected character {found}{hint}"),
        )
    }

    /// `'...'` with `''` for a quote inside.
    fn string(&mut self) -> LexResult<Token> {
        let start = self.pos;
        let mut value = String::new();
        let mut rest = &self.text[start + 1..];
        loop {
            let Some(quote) = rest.find('\'') else {
                return Err(self.error(
                    start,
                    &["'"],
                    "end of input".to_owned(),
                    "unterminated string: no closing ' for the quote opened here".to_owned(),
                ));
            };
            value.push_str(&rest[..quote]);
            rest = &rest[quote + 1..];
            if let Some(after) = rest.strip_prefix('\'') {
                value.push('\'');
                rest = after;
            } else {
                break;
            }
        }
        self.pos = self.text.len() - rest.len();
        Ok(Token {
            kind: TokenKind::Str(value),
            start,
            end: self.pos,
        })
    }

    /// `` `a b/c` `` with ``` `` ``` for a backtick inside: a whole path.
    fn quoted_path(&mut self) -> LexResult<Token> {
        let start = self.pos;
        let mut value = String::new();
        let mut rest = &self.text[start + 1..];
        loop {
            let Some(tick) = rest.find('`') else {
                return Err(self.error(
                    start,
                    &["`"],
                    "end of input".to_owned(),
                    "unterminated quoted name: no closing ` for the one opened here".to_owned(),
                ));
            };
            value.push_str(&rest[..tick]);
            rest = &rest[tick + 1..];
            if let Some(after) = rest.strip_prefix('`') {
                value.push('`');
                rest = after;
            } else {
                break;
            }
        }
        let end = self.text.len() - rest.len();
        let path = Path::new(value).map_err(|e| {
            let found = describe_text(&self.text[start..end]);
            let message = match e {
                PathError::Empty => "a quoted field name cannot be empty".to_owned(),
                other => format!("invalid field name {found}: {other}"),
            };
            self.error(start, &["a field path"], found, message)
        })?;
        self.pos = end;
        Ok(Token {
            kind: TokenKind::Path(path),
            start,
            end,
        })
    }

    /// `[-]digits[.digits]`, converted to an int or an exact decimal.
    fn number(&mut self) -> LexResult<Token> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits_from = |mut i: usize| {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let negative = bytes[start] == b'-';
        let int_start = start + usize::from(negative);
        let int_end = digits_from(int_start);
        if int_end == int_start {
            let found = self.text[int_start..]
                .chars()
                .next()
                .map_or_else(|| "end of input".to_owned(), describe_char);
            return Err(self.error(
                start,
                &["a digit"],
                found.clone(),
                format!("expected a digit after '-', found {found}"),
            ));
        }
        let mut end = int_end;
        let mut fraction = None;
        if bytes.get(end) == Some(&b'.') {
            let frac_end = digits_from(end + 1);
            if frac_end == end + 1 {
                let found = describe_text(&self.text[start..=end]);
                return Err(self.error(
                    start,
                    &["a digit"],
                    found.clone(),
                    format!("malformed number {found}: expected digits after the decimal point"),
                ));
            }
            fraction = Some(&self.text[end + 1..frac_end]);
            end = frac_end;
        }
        let glued = |c: char| is_ident_continue(c) || c == '.';
        if self.text[end..].starts_with(glued) {
            let stop = self.text[end..]
                .find(|c: char| !glued(c))
                .map_or(self.text.len(), |i| end + i);
            let found = describe_text(&self.text[start..stop]);
            return Err(self.error(
                start,
                &["a number"],
                found.clone(),
                format!("malformed number {found}"),
            ));
        }
        let text = &self.text[start..end];
        let literal = match fraction {
            None => text.parse::<i64>().map(Literal::Int).map_err(|_| {
                self.error(
                    start,
                    &["a number"],
                    describe_text(text),
                    format!("integer {text} is out of the 64-bit range"),
                )
            })?,
            Some(fraction) => {
                let scale = u8::try_from(fraction.len())
                    .ok()
                    .filter(|s| *s <= MAX_DECIMAL_SCALE)
                    .ok_or_else(|| {
                        self.error(
                            start,
                            &["a number"],
                            describe_text(text),
                            format!(
                                "decimal {} has more than {MAX_DECIMAL_SCALE} digits after the \
                                 decimal point",
                                shorten(text)
                            ),
                        )
                    })?;
                let mut unscaled = String::with_capacity(text.len());
                unscaled.push_str(&self.text[start..int_end]);
                unscaled.push_str(fraction);
                let decimal = unscaled
                    .parse::<i128>()
                    .ok()
                    .and_then(|m| Decimal::new(m, scale))
                    .ok_or_else(|| {
                        self.error(
                            start,
                            &["a number"],
                            describe_text(text),
                            format!("decimal {} has too many digits", shorten(text)),
                        )
                    })?;
                Literal::Decimal(decimal)
            }
        };
        self.pos = end;
        Ok(Token {
            kind: TokenKind::Number(literal),
            start,
            end,
        })
    }

    /// A keyword or a bare path.
    fn name(&mut self) -> LexResult<Token> {
        let start = self.pos;
        let text = self.text;
        let segment_end = |from: usize| {
            text[from..]
                .find(|c: char| !is_ident_continue(c))
                .map_or(text.len(), |i| from + i)
        };
        let mut end = segment_end(start);
        let mut segments = 1;
        while text[end..].starts_with('/') {
            match text[end + 1..].chars().next() {
                Some(c) if is_ident_start(c) => {
                    end = segment_end(end + 1);
                    segments += 1;
                }
                other => {
                    let found = other.map_or_else(|| "end of input".to_owned(), describe_char);
                    return Err(self.error(
                        end + 1,
                        &["a path segment"],
                        found.clone(),
                        format!(
                            "expected a path segment after '/', found {found}; names that do not \
                             match [A-Za-z_][A-Za-z0-9_]* are written in backticks"
                        ),
                    ));
                }
            }
        }
        if let Some(c) = text[end..].chars().next() {
            let dash = c == '-' && !text[end + 1..].starts_with('-');
            if dash || c == '.' || c == ':' || c == '#' || c == '@' || c.is_alphanumeric() {
                let stop = text[end..]
                    .find(|c: char| {
                        c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '<' | '>' | '!')
                    })
                    .map_or(text.len(), |i| end + i);
                let found = describe_char(c);
                return Err(self.error(
                    end,
                    &[],
                    found.clone(),
                    format!(
                        "unexpected character {found} in a name; write such names in backticks: \
                         `{}`",
                        shorten(&text[start..stop])
                    ),
                ));
            }
        }
        self.pos = end;
        let word = &text[start..end];
        let keyword = if segments == 1 {
            Keyword::from_word(word)
        } else {
            None
        };
        let kind = match keyword {
            Some(k) => TokenKind::Keyword(k),
            None => match Path::new(word) {
                Ok(path) => TokenKind::Path(path),
                Err(e) => {
                    return Err(self.error(
                        start,
                        &["a field path"],
                        describe_text(word),
                        format!("invalid field name: {e}"),
                    ));
                }
            },
        };
        Ok(Token { kind, start, end })
    }
}

/// `text` cut to a readable length for messages.
pub(super) fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `c` quoted for a message, escaped when it is invisible.
pub(super) fn describe_char(c: char) -> String {
    format!("'{}'", c.escape_debug())
}

/// `text` quoted for a message.
pub(super) fn describe_text(text: &str) -> String {
    format!("'{}'", shorten(text))
}

#[cfg(test)]
mod tests {
    use super::super::ast::Date;
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let token = lexer.next_token().unwrap_or_else(|e| panic!("{text}: {e}"));
            if token.kind == TokenKind::Eof {
                return out;
            }
            out.push(token.kind);
        }
    }

    fn lex_error(text: &str) -> ParseError {
        let mut lexer = Lexer::new(text);
        loop {
            match lexer.next_token() {
                Ok(t) if t.kind == TokenKind::Eof => panic!("{text}: no error"),
                Ok(_) => {}
                Err(e) => return *e,
            }
        }
    }

    fn path(text: &str) -> TokenKind {
        TokenKind::Path(Path::new(text).unwrap())
    }

    fn dec(m: i128, s: u8) -> TokenKind {
        TokenKind::Number(Literal::Decimal(Decimal::new(m, s).unwrap()))
    }

    #[test]
    fn symbols() {
        use CmpOp::*;
        assert_eq!(
            kinds("( ) , = != <> < <= > >="),
            [
                TokenKind::LParen,
                TokenKind::RParen,
                TokenKind::Comma,
                TokenKind::Cmp(Eq),
                TokenKind::Cmp(Ne),
                TokenKind::Cmp(Ne),
                TokenKind::Cmp(Lt),
                TokenKind::Cmp(Le),
                TokenKind::Cmp(Gt),
                TokenKind::Cmp(Ge),
            ]
        );
        assert_eq!(
            kinds("a<=1"),
            [
                path("a"),
                TokenKind::Cmp(Le),
                TokenKind::Number(Literal::Int(1))
            ]
        );
    }

    #[test]
    fn keywords_ignore_case_and_only_match_single_segments() {
        assert_eq!(
            kinds("and Or XOR nOt first_did"),
            [
                TokenKind::Keyword(Keyword::And),
                TokenKind::Keyword(Keyword::Or),
                TokenKind::Keyword(Keyword::Xor),
                TokenKind::Keyword(Keyword::Not),
                TokenKind::Keyword(Keyword::FirstDid),
            ]
        );
        assert_eq!(kinds("not/x"), [path("not/x")]);
        assert_eq!(kinds("android"), [path("android")]);
        for k in KEYWORDS {
            assert_eq!(Keyword::from_word(&k.as_str().to_lowercase()), Some(k));
        }
    }

    #[test]
    fn paths_bare_and_quoted() {
        assert_eq!(
            kinds("interest/sports _x/Y_9"),
            [path("interest/sports"), path("_x/Y_9")]
        );
        assert_eq!(kinds("`risk level/2fa-on`"), [path("risk level/2fa-on")]);
        assert_eq!(kinds("`a``b`"), [path("a`b")]);
        assert_eq!(kinds("`and`"), [path("and")]);
    }

    #[test]
    fn strings_with_doubled_quotes_and_newlines() {
        assert_eq!(
            kinds("'it''s' '' 'a\nb' '北京'"),
            [
                TokenKind::Str("it's".into()),
                TokenKind::Str(String::new()),
                TokenKind::Str("a\nb".into()),
                TokenKind::Str("北京".into()),
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("0 -3 007 12.50 -0.5 9223372036854775807 -9223372036854775808"),
            [
                TokenKind::Number(Literal::Int(0)),
                TokenKind::Number(Literal::Int(-3)),
                TokenKind::Number(Literal::Int(7)),
                dec(1250, 2),
                dec(-5, 1),
                TokenKind::Number(Literal::Int(i64::MAX)),
                TokenKind::Number(Literal::Int(i64::MIN)),
            ]
        );
        let max_scale = format!("0.{}1", "0".repeat(usize::from(MAX_DECIMAL_SCALE) - 1));
        assert_eq!(kinds(&max_scale), [dec(1, MAX_DECIMAL_SCALE)]);
        assert_eq!(
            kinds("-170141183460469231731687303715884105.728"),
            [dec(i128::MIN, 3)]
        );
    }

    #[test]
    fn comments_and_whitespace_are_skipped() {
        assert_eq!(
            kinds("-- leading\n a -- trailing\n\t,--x"),
            [path("a"), TokenKind::Comma]
        );
        assert_eq!(kinds("a\u{3000}b"), [path("a"), path("b")]);
    }

    #[test]
    fn spans_are_byte_offsets() {
        let mut lexer = Lexer::new("  'é' ab");
        let t = lexer.next_token().unwrap();
        assert_eq!((t.start, t.end), (2, 6));
        let t = lexer.next_token().unwrap();
        assert_eq!((t.start, t.end), (7, 9));
        let t = lexer.next_token().unwrap();
        assert_eq!((t.kind, t.start, t.end), (TokenKind::Eof, 9, 9));
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        let cases: &[(&str, u32, u32, &str)] = &[
            ("a = 'open", 1, 5, "unterminated string"),
            ("`open", 1, 1, "unterminated quoted name"),
            ("``", 1, 1, "quoted field name cannot be empty"),
            ("`a//b`", 1, 1, "segment 2 of the field path is empty"),
            ("a # b", 1, 3, "unexpected character '#'"),
            ("a && b", 1, 3, "use the keywords AND, OR, XOR"),
            ("!a", 1, 1, "negation is written NOT"),
            ("x = \"a\"", 1, 5, "single quotes"),
            ("x = - 1", 1, 5, "expected a digit after '-'"),
            ("x = 1.", 1, 5, "expected digits after the decimal point"),
            ("x = 1.2.3", 1, 5, "malformed number '1.2.3'"),
            ("x = 18abc", 1, 5, "malformed number '18abc'"),
            ("x = 9223372036854775808", 1, 5, "out of the 64-bit range"),
            (
                "x =\n  -9223372036854775809",
                2,
                3,
                "out of the 64-bit range",
            ),
            (
                "x = 1701411834604692317316873037158841057.28",
                1,
                5,
                "too many digits",
            ),
            ("a/ b", 1, 3, "expected a path segment after '/'"),
            ("a/1", 1, 3, "expected a path segment after '/'"),
            ("a/", 1, 3, "found end of input"),
            ("risk-level", 1, 5, "`risk-level`"),
            ("café = 1", 1, 4, "unexpected character 'é' in a name"),
            ("x = .5", 1, 5, "0.5"),
        ];
        for &(text, line, column, needle) in cases {
            let e = lex_error(text);
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        let scale = format!("0.{}", "1".repeat(usize::from(MAX_DECIMAL_SCALE) + 1));
        assert!(lex_error(&scale).message.contains("more than 38 digits"));
    }

    #[test]
    fn bare_segment_shape() {
        assert!(is_bare_segment("a_1"));
        assert!(is_bare_segment("_"));
        assert!(!is_bare_segment("1a"));
        assert!(!is_bare_segment(""));
        assert!(!is_bare_segment("a-b"));
        assert!(!is_bare_segment("é"));
    }

    #[test]
    fn date_keyword_is_separate_from_its_string() {
        assert_eq!(
            kinds("DATE'2026-11-25'"),
            [
                TokenKind::Keyword(Keyword::Date),
                TokenKind::Str("2026-11-25".into())
            ]
        );
        assert!(Date::parse_iso("2026-11-25").is_some());
    }
}
