//! Crowd expressions: the text form for people and a small builder for the structured AST.
//!
//! Every request that selects a crowd takes `impl Into<Expr>`, so a `&str`/`String` (the text
//! form) and a [`Node`] (the AST) are both accepted:
//!
//! ```
//! use portrait_client::ast::{and, field, flag, not};
//! use portrait_client::Expr;
//!
//! let text = Expr::from("vip AND age >= 30 AND NOT risk/blacklist");
//! let tree = Expr::from(and([
//!     flag("vip"),
//!     field("age").ge(30),
//!     not(flag("risk/blacklist")),
//! ]));
//! assert_eq!(text.as_text(), Some("vip AND age >= 30 AND NOT risk/blacklist"));
//! assert_eq!(tree.as_text(), None);
//! ```
//!
//! Programs should prefer the AST: it needs no quoting of user-supplied values.

use portrait_proto::v1::{self, Node, node};

/// A crowd expression, in text or AST form, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr(v1::Expr);

impl Expr {
    /// The text form, if this expression is one.
    pub fn as_text(&self) -> Option<&str> {
        match &self.0.kind {
            Some(v1::expr::Kind::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// The wire message.
    pub fn into_proto(self) -> v1::Expr {
        self.0
    }
}

impl From<&str> for Expr {
    fn from(text: &str) -> Self {
        Expr(v1::Expr {
            kind: Some(v1::expr::Kind::Text(text.to_owned())),
        })
    }
}

impl From<String> for Expr {
    fn from(text: String) -> Self {
        Expr(v1::Expr {
            kind: Some(v1::expr::Kind::Text(text)),
        })
    }
}

impl From<&String> for Expr {
    fn from(text: &String) -> Self {
        Expr::from(text.as_str())
    }
}

impl From<Node> for Expr {
    fn from(ast: Node) -> Self {
        Expr(v1::Expr {
            kind: Some(v1::expr::Kind::Ast(ast)),
        })
    }
}

impl From<v1::Expr> for Expr {
    fn from(expr: v1::Expr) -> Self {
        Expr(expr)
    }
}

/// Conversion of Rust values into expression literals.
///
/// Implemented for strings (ENUM and SET values), integers and booleans; use [`ast::decimal`] and
/// [`ast::date`] for the other literal kinds.
///
/// [`ast::decimal`]: crate::ast::decimal
/// [`ast::date`]: crate::ast::date
pub trait IntoLiteral {
    /// The wire literal.
    fn into_literal(self) -> v1::Literal;
}

fn literal(value: v1::literal::Value) -> v1::Literal {
    v1::Literal { value: Some(value) }
}

impl IntoLiteral for v1::Literal {
    fn into_literal(self) -> v1::Literal {
        self
    }
}

impl IntoLiteral for &str {
    fn into_literal(self) -> v1::Literal {
        literal(v1::literal::Value::StringValue(self.to_owned()))
    }
}

impl IntoLiteral for String {
    fn into_literal(self) -> v1::Literal {
        literal(v1::literal::Value::StringValue(self))
    }
}

impl IntoLiteral for bool {
    fn into_literal(self) -> v1::Literal {
        literal(v1::literal::Value::BoolValue(self))
    }
}

macro_rules! int_literal {
    ($($t:ty),*) => {$(
        impl IntoLiteral for $t {
            fn into_literal(self) -> v1::Literal {
                literal(v1::literal::Value::IntValue(i64::from(self)))
            }
        }
    )*};
}
int_literal!(i8, i16, i32, i64, u8, u16, u32);

/// Builders of structured expression nodes.
///
/// ```
/// use portrait_client::ast::{and, date, decimal, field, flag, or};
///
/// let spenders = and([
///     field("gender").eq("female"),
///     field("age").between(18, 30),
///     field("city").in_list(["Beijing", "Shanghai"]),
///     or([field("interest").has("sports"), flag("vip")]),
///     field("ltv").ge(decimal("99.90")),
///     field("last_login").ge(date("2026-11-01")),
/// ]);
/// # let _ = spenders;
/// ```
pub mod ast {
    use super::*;

    fn wrap(kind: node::Kind) -> Node {
        Node { kind: Some(kind) }
    }

    /// Every known user of the table.
    pub fn all() -> Node {
        wrap(node::Kind::All(node::All {}))
    }

    /// Users with the FLAG field at `path` set.
    pub fn flag(path: impl Into<String>) -> Node {
        wrap(node::Kind::Flag(node::Flag { path: path.into() }))
    }

    /// Exactly these users.
    pub fn keys<I, K>(keys: I) -> Node
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        wrap(node::Kind::Keys(node::Keys {
            keys: keys.into_iter().map(Into::into).collect(),
        }))
    }

    /// Intersection of the operands (every known user if there are none).
    pub fn and(operands: impl IntoIterator<Item = Node>) -> Node {
        wrap(node::Kind::LogicalAnd(node::And {
            operands: operands.into_iter().collect(),
        }))
    }

    /// Union of the operands (nobody if there are none).
    pub fn or(operands: impl IntoIterator<Item = Node>) -> Node {
        wrap(node::Kind::LogicalOr(node::Or {
            operands: operands.into_iter().collect(),
        }))
    }

    /// Users in an odd number of the operands.
    pub fn xor(operands: impl IntoIterator<Item = Node>) -> Node {
        wrap(node::Kind::LogicalXor(node::Xor {
            operands: operands.into_iter().collect(),
        }))
    }

    /// Known users not in `operand`.
    pub fn not(operand: Node) -> Node {
        wrap(node::Kind::LogicalNot(Box::new(node::Not {
            operand: Some(Box::new(operand)),
        })))
    }

    /// An exact decimal literal, e.g. `decimal("12.50")`.
    pub fn decimal(value: impl Into<String>) -> v1::Literal {
        literal(v1::literal::Value::DecimalValue(value.into()))
    }

    /// A date literal `YYYY-MM-DD` (midnight UTC), for TIMESTAMP fields.
    pub fn date(value: impl Into<String>) -> v1::Literal {
        literal(v1::literal::Value::DateValue(value.into()))
    }

    /// A predicate on the field at `path`; finish it with a comparison.
    pub fn field(path: impl Into<String>) -> FieldRef {
        FieldRef { path: path.into() }
    }

    /// A field about to be compared; see [`field`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[must_use = "a field reference selects nothing until it is compared"]
    pub struct FieldRef {
        path: String,
    }

    impl FieldRef {
        fn compare(self, op: v1::CompareOp, value: impl IntoLiteral) -> Node {
            wrap(node::Kind::Compare(node::Compare {
                path: self.path,
                op: op as i32,
                value: Some(value.into_literal()),
            }))
        }

        /// `path = value`
        pub fn eq(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Eq, value)
        }

        /// `path != value`
        pub fn ne(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Ne, value)
        }

        /// `path < value`
        pub fn lt(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Lt, value)
        }

        /// `path <= value`
        pub fn le(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Le, value)
        }

        /// `path > value`
        pub fn gt(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Gt, value)
        }

        /// `path >= value`
        pub fn ge(self, value: impl IntoLiteral) -> Node {
            self.compare(v1::CompareOp::Ge, value)
        }

        /// `path BETWEEN low AND high` (both inclusive).
        pub fn between(self, low: impl IntoLiteral, high: impl IntoLiteral) -> Node {
            wrap(node::Kind::Between(node::Between {
                path: self.path,
                low: Some(low.into_literal()),
                high: Some(high.into_literal()),
            }))
        }

        fn in_list_impl<L: IntoLiteral>(
            self,
            values: impl IntoIterator<Item = L>,
            negated: bool,
        ) -> Node {
            wrap(node::Kind::InList(node::InList {
                path: self.path,
                values: values.into_iter().map(IntoLiteral::into_literal).collect(),
                negated,
            }))
        }

        /// `path IN (values…)`
        pub fn in_list<L: IntoLiteral>(self, values: impl IntoIterator<Item = L>) -> Node {
            self.in_list_impl(values, false)
        }

        /// `path NOT IN (values…)`
        pub fn not_in<L: IntoLiteral>(self, values: impl IntoIterator<Item = L>) -> Node {
            self.in_list_impl(values, true)
        }

        fn has_impl<L: IntoLiteral>(
            self,
            mode: v1::HasMode,
            values: impl IntoIterator<Item = L>,
        ) -> Node {
            wrap(node::Kind::Has(node::Has {
                path: self.path,
                mode: mode as i32,
                values: values.into_iter().map(IntoLiteral::into_literal).collect(),
            }))
        }

        /// `path HAS value` (SET fields).
        pub fn has(self, value: impl IntoLiteral) -> Node {
            self.has_impl(v1::HasMode::One, [value])
        }

        /// `path HAS ANY (values…)` (SET fields).
        pub fn has_any<L: IntoLiteral>(self, values: impl IntoIterator<Item = L>) -> Node {
            self.has_impl(v1::HasMode::Any, values)
        }

        /// `path HAS ALL (values…)` (SET fields).
        pub fn has_all<L: IntoLiteral>(self, values: impl IntoIterator<Item = L>) -> Node {
            self.has_impl(v1::HasMode::All, values)
        }
    }
}

#[cfg(test)]
mod tests {
    use v1::literal::Value as L;

    use super::ast::*;
    use super::*;

    #[test]
    fn comparisons_build_compare_nodes() {
        let Some(node::Kind::Compare(c)) = field("age").ge(30).kind else {
            panic!("not a compare node");
        };
        assert_eq!(c.path, "age");
        assert_eq!(c.op(), v1::CompareOp::Ge);
        assert_eq!(c.value.unwrap().value, Some(L::IntValue(30)));
    }

    #[test]
    fn literals_keep_their_kind() {
        assert_eq!("x".into_literal().value, Some(L::StringValue("x".into())));
        assert_eq!(true.into_literal().value, Some(L::BoolValue(true)));
        assert_eq!(7u32.into_literal().value, Some(L::IntValue(7)));
        assert_eq!(decimal("1.50").value, Some(L::DecimalValue("1.50".into())));
        assert_eq!(
            date("2026-11-25").value,
            Some(L::DateValue("2026-11-25".into()))
        );
    }

    #[test]
    fn set_and_list_predicates_carry_mode_and_negation() {
        let Some(node::Kind::Has(h)) = field("interest").has_all(["a", "b"]).kind else {
            panic!("not a has node");
        };
        assert_eq!(h.mode(), v1::HasMode::All);
        assert_eq!(h.values.len(), 2);
        let Some(node::Kind::Has(h)) = field("interest").has("a").kind else {
            panic!("not a has node");
        };
        assert_eq!(h.mode(), v1::HasMode::One);
        let Some(node::Kind::InList(i)) = field("city").not_in(["Beijing"]).kind else {
            panic!("not an in node");
        };
        assert!(i.negated);
    }

    #[test]
    fn boolean_operators_nest() {
        let tree = not(and([flag("a"), or([flag("b"), xor([flag("c"), all()])])]));
        let Some(node::Kind::LogicalNot(not)) = tree.kind else {
            panic!("not a not")
        };
        let Some(node::Kind::LogicalAnd(and)) = not.operand.unwrap().kind else {
            panic!("not an and")
        };
        assert_eq!(and.operands.len(), 2);
        assert_eq!(and.operands[0], flag("a"));
    }

    #[test]
    fn text_and_ast_convert_into_expr() {
        assert_eq!(Expr::from("vip").as_text(), Some("vip"));
        assert_eq!(Expr::from(String::from("vip")).as_text(), Some("vip"));
        let ast = Expr::from(keys(["u1", "u2"]));
        assert_eq!(ast.as_text(), None);
        assert!(matches!(
            ast.into_proto().kind,
            Some(v1::expr::Kind::Ast(_))
        ));
    }
}
