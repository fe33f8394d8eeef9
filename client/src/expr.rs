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

    /// Users who did the EVENT field at `event` at least once in `window`
    /// (`did(event, window)`).
    ///
    /// ```
    /// use portrait_client::ast::{did, did_count, last_days, not};
    /// use portrait_client::proto::{CompareOp, Measure};
    ///
    /// // did(purchase, last 7 days) >= 2 AND NOT did(login, last 30 days)
    /// let lapsed_buyers = portrait_client::ast::and([
    ///     did_count("purchase", last_days(7), CompareOp::Ge, 2, Measure::Times),
    ///     not(did("login", last_days(30))),
    /// ]);
    /// # let _ = lapsed_buyers;
    /// ```
    pub fn did(event: impl Into<String>, window: v1::Window) -> Node {
        wrap(node::Kind::Did(node::Did {
            event: event.into(),
            window: Some(window),
            count: None,
        }))
    }

    /// Users whose number of times (or of days, per `measure`) doing `event` in `window`
    /// compares to `n` with `op` (`did(event, window) >= n`, `did(event, window) on >= n days`).
    pub fn did_count(
        event: impl Into<String>,
        window: v1::Window,
        op: v1::CompareOp,
        n: u64,
        measure: v1::Measure,
    ) -> Node {
        wrap(node::Kind::Did(node::Did {
            event: event.into(),
            window: Some(window),
            count: Some(v1::DidCount {
                op: op as i32,
                n,
                measure: measure as i32,
            }),
        }))
    }

    fn window(kind: v1::window::Kind) -> v1::Window {
        v1::Window { kind: Some(kind) }
    }

    /// The `days` days ending at the reference day, both included (`last N days`).
    pub fn last_days(days: u32) -> v1::Window {
        window(v1::window::Kind::Last(v1::window::LastDays {
            days,
            ending: String::new(),
        }))
    }

    /// The `days` days ending at the date `ending` (`YYYY-MM-DD`), both included
    /// (`last N days ending DATE 'x'`).
    pub fn last_days_ending(days: u32, ending: impl Into<String>) -> v1::Window {
        window(v1::window::Kind::Last(v1::window::LastDays {
            days,
            ending: ending.into(),
        }))
    }

    /// The days from `first` to `last` (`YYYY-MM-DD`), both included
    /// (`DATE 'first' TO DATE 'last'`).
    pub fn dates(first: impl Into<String>, last: impl Into<String>) -> v1::Window {
        window(v1::window::Kind::Range(v1::DateRange {
            first: first.into(),
            last: last.into(),
        }))
    }

    /// Every day kept (`ever`).
    pub fn ever() -> v1::Window {
        window(v1::window::Kind::Ever(v1::window::Ever {}))
    }

    /// The first occurrence of `event` (`first_did(event) …`); finish it with a test.
    pub fn first_did(event: impl Into<String>) -> OccurrenceRef {
        OccurrenceRef {
            which: v1::Occurrence::First,
            event: event.into(),
        }
    }

    /// The last occurrence of `event` (`last_did(event) …`); finish it with a test.
    ///
    /// ```
    /// use portrait_client::ast::last_did;
    /// use portrait_client::proto::CompareOp;
    ///
    /// // last_did(login) > 30 days ago
    /// let churned = last_did("login").days_ago(CompareOp::Gt, 30);
    /// # let _ = churned;
    /// ```
    pub fn last_did(event: impl Into<String>) -> OccurrenceRef {
        OccurrenceRef {
            which: v1::Occurrence::Last,
            event: event.into(),
        }
    }

    /// The first or last occurrence of an event, about to be tested; see [`first_did`] and
    /// [`last_did`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[must_use = "an occurrence selects nothing until it is tested"]
    pub struct OccurrenceRef {
        which: v1::Occurrence,
        event: String,
    }

    impl OccurrenceRef {
        fn test(self, test: node::occurred::Test) -> Node {
            wrap(node::Kind::Occurred(node::Occurred {
                which: self.which as i32,
                event: self.event,
                test: Some(test),
            }))
        }

        /// Compares the occurrence's age in days (0 on the reference day) with `days`:
        /// `days_ago(CompareOp::Gt, 30)` is `> 30 days ago`.
        pub fn days_ago(self, op: v1::CompareOp, days: u32) -> Node {
            self.test(node::occurred::Test::DaysAgo(node::occurred::DaysAgo {
                op: op as i32,
                days,
            }))
        }

        /// Compares the occurrence's date with `date` (`YYYY-MM-DD`): `on(CompareOp::Gt, d)`
        /// is "after d".
        pub fn on(self, op: v1::CompareOp, date: impl Into<String>) -> Node {
            self.test(node::occurred::Test::OnDate(node::occurred::OnDate {
                op: op as i32,
                date: date.into(),
            }))
        }

        /// The occurrence is one of the last `days` days, the reference day included
        /// (`within N days`).
        pub fn within_days(self, days: u32) -> Node {
            self.test(node::occurred::Test::WithinDays(days))
        }
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
    fn behaviour_predicates_carry_window_count_and_test() {
        let Some(node::Kind::Did(d)) = did("login", last_days(30)).kind else {
            panic!("not a did node");
        };
        assert_eq!((d.event.as_str(), d.count), ("login", None));
        let Some(v1::window::Kind::Last(last)) = d.window.unwrap().kind else {
            panic!("not a last-days window");
        };
        assert_eq!((last.days, last.ending.as_str()), (30, ""));

        let n = did_count(
            "purchase",
            dates("2026-11-01", "2026-11-07"),
            v1::CompareOp::Ge,
            2,
            v1::Measure::Days,
        );
        let Some(node::Kind::Did(d)) = n.kind else {
            panic!("not a did node");
        };
        let count = d.count.unwrap();
        assert_eq!(
            (count.op(), count.n, count.measure()),
            (v1::CompareOp::Ge, 2, v1::Measure::Days)
        );
        assert!(matches!(
            d.window.unwrap().kind,
            Some(v1::window::Kind::Range(r)) if r.first == "2026-11-01" && r.last == "2026-11-07"
        ));
        assert!(matches!(
            last_days_ending(1, "2026-11-20").kind,
            Some(v1::window::Kind::Last(l)) if l.ending == "2026-11-20"
        ));
        assert!(matches!(ever().kind, Some(v1::window::Kind::Ever(_))));

        let Some(node::Kind::Occurred(o)) = last_did("login").days_ago(v1::CompareOp::Gt, 30).kind
        else {
            panic!("not an occurred node");
        };
        assert_eq!(
            (o.which(), o.event.as_str()),
            (v1::Occurrence::Last, "login")
        );
        assert!(matches!(
            o.test,
            Some(node::occurred::Test::DaysAgo(a)) if a.days == 30 && a.op() == v1::CompareOp::Gt
        ));
        let Some(node::Kind::Occurred(o)) = first_did("pay").within_days(7).kind else {
            panic!("not an occurred node");
        };
        assert_eq!(o.which(), v1::Occurrence::First);
        assert_eq!(o.test, Some(node::occurred::Test::WithinDays(7)));
        let Some(node::Kind::Occurred(o)) =
            first_did("pay").on(v1::CompareOp::Le, "2026-11-02").kind
        else {
            panic!("not an occurred node");
        };
        assert!(matches!(
            o.test,
            Some(node::occurred::Test::OnDate(d)) if d.date == "2026-11-02"
        ));
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
