//! Unit tests of the proto ↔ engine conversions.

use portrait_engine::catalog::FieldSpec;
use tonic::Code;

use super::*;

// --- builders of wire nodes ------------------------------------------------------------------

fn wrap(kind: node::Kind) -> v1::Node {
    v1::Node { kind: Some(kind) }
}

fn lit(value: v1::literal::Value) -> v1::Literal {
    v1::Literal { value: Some(value) }
}

fn s(text: &str) -> v1::Literal {
    lit(v1::literal::Value::StringValue(text.into()))
}

fn i(n: i64) -> v1::Literal {
    lit(v1::literal::Value::IntValue(n))
}

fn flag(path: &str) -> v1::Node {
    wrap(node::Kind::Flag(node::Flag { path: path.into() }))
}

fn and(operands: Vec<v1::Node>) -> v1::Node {
    wrap(node::Kind::LogicalAnd(node::And { operands }))
}

fn or(operands: Vec<v1::Node>) -> v1::Node {
    wrap(node::Kind::LogicalOr(node::Or { operands }))
}

fn xor(operands: Vec<v1::Node>) -> v1::Node {
    wrap(node::Kind::LogicalXor(node::Xor { operands }))
}

fn not(operand: v1::Node) -> v1::Node {
    wrap(node::Kind::LogicalNot(Box::new(node::Not {
        operand: Some(Box::new(operand)),
    })))
}

fn compare(path: &str, op: v1::CompareOp, value: v1::Literal) -> v1::Node {
    wrap(node::Kind::Compare(node::Compare {
        path: path.into(),
        op: op.into(),
        value: Some(value),
    }))
}

fn has(path: &str, mode: v1::HasMode, values: Vec<v1::Literal>) -> v1::Node {
    wrap(node::Kind::Has(node::Has {
        path: path.into(),
        mode: mode.into(),
        values,
    }))
}

fn keys(keys: &[&str]) -> v1::Node {
    wrap(node::Kind::Keys(node::Keys {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    }))
}

// --- engine expressions ----------------------------------------------------------------------

fn p(text: &str) -> Path {
    Path::new(text).unwrap()
}

fn field_expr(text: &str) -> Expr {
    Expr::Field(p(text))
}

fn convert(n: &v1::Node) -> Result<Expr, Status> {
    ast(n, KeyKind::Str, 64)
}

fn ok(n: v1::Node) -> Expr {
    convert(&n).unwrap_or_else(|e| panic!("{n:?}: {e}"))
}

fn refused(n: v1::Node) -> String {
    let status = convert(&n).expect_err("the node must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    status.message().to_owned()
}

fn nobody_expr() -> Expr {
    Expr::Not(Box::new(Expr::All))
}

#[test]
fn every_node_kind_converts() {
    assert_eq!(ok(wrap(node::Kind::All(node::All {}))), Expr::All);
    assert_eq!(ok(flag("risk/blacklist")), field_expr("risk/blacklist"));

    let ops = [
        (v1::CompareOp::Eq, CmpOp::Eq),
        (v1::CompareOp::Ne, CmpOp::Ne),
        (v1::CompareOp::Lt, CmpOp::Lt),
        (v1::CompareOp::Le, CmpOp::Le),
        (v1::CompareOp::Gt, CmpOp::Gt),
        (v1::CompareOp::Ge, CmpOp::Ge),
    ];
    for (wire, engine) in ops {
        assert_eq!(
            ok(compare("demographic/age", wire, i(30))),
            Expr::Compare {
                path: p("demographic/age"),
                op: engine,
                value: Literal::Int(30),
            }
        );
    }

    for negated in [false, true] {
        let n = wrap(node::Kind::InList(node::InList {
            path: "geo/city".into(),
            values: vec![s("Beijing"), s("Shanghai")],
            negated,
        }));
        assert_eq!(
            ok(n),
            Expr::In {
                path: p("geo/city"),
                values: vec![
                    Literal::Str("Beijing".into()),
                    Literal::Str("Shanghai".into())
                ],
                negated,
            }
        );
    }

    let between = wrap(node::Kind::Between(node::Between {
        path: "demographic/age".into(),
        low: Some(i(18)),
        high: Some(i(30)),
    }));
    assert_eq!(
        ok(between),
        Expr::Between {
            path: p("demographic/age"),
            low: Literal::Int(18),
            high: Literal::Int(30),
        }
    );

    let modes = [
        (v1::HasMode::One, HasMode::One, vec![s("sports")]),
        (
            v1::HasMode::Any,
            HasMode::Any,
            vec![s("sports"), s("music")],
        ),
        (
            v1::HasMode::All,
            HasMode::All,
            vec![s("sports"), s("music")],
        ),
    ];
    for (wire, engine, values) in modes {
        let expected: Vec<Literal> = values
            .iter()
            .map(|v| literal_value(v.value.as_ref().unwrap()).unwrap())
            .collect();
        assert_eq!(
            ok(has("interest", wire, values)),
            Expr::Has {
                path: p("interest"),
                mode: engine,
                values: expected,
            }
        );
    }

    assert_eq!(
        ok(keys(&["u1", "u2"])),
        Expr::Keys(vec![Literal::Str("u1".into()), Literal::Str("u2".into())])
    );
    assert_eq!(
        ok(and(vec![flag("a"), flag("b")])),
        Expr::And(vec![field_expr("a"), field_expr("b")])
    );
    assert_eq!(
        ok(or(vec![flag("a"), flag("b")])),
        Expr::Or(vec![field_expr("a"), field_expr("b")])
    );
    assert_eq!(
        ok(xor(vec![flag("a"), flag("b"), flag("c")])),
        Expr::Xor(vec![field_expr("a"), field_expr("b"), field_expr("c")])
    );
    assert_eq!(ok(not(flag("a"))), Expr::Not(Box::new(field_expr("a"))));
}

#[test]
fn nested_trees_keep_their_shape() {
    let tree = and(vec![
        compare("demographic/gender", v1::CompareOp::Eq, s("female")),
        or(vec![flag("vip"), not(flag("risk/blacklist"))]),
    ]);
    let expected = Expr::And(vec![
        Expr::Compare {
            path: p("demographic/gender"),
            op: CmpOp::Eq,
            value: Literal::Str("female".into()),
        },
        Expr::Or(vec![
            field_expr("vip"),
            Expr::Not(Box::new(field_expr("risk/blacklist"))),
        ]),
    ]);
    let converted = ok(tree);
    assert_eq!(converted, expected);
    // The same tree as the text form gives.
    assert_eq!(
        converted,
        expr::parse("demographic/gender = 'female' AND (vip OR NOT risk/blacklist)").unwrap()
    );
}

#[test]
fn empty_and_single_operand_connectives_follow_the_contract() {
    assert_eq!(ok(and(vec![])), Expr::All);
    assert_eq!(ok(or(vec![])), nobody_expr());
    assert_eq!(ok(xor(vec![])), nobody_expr());
    assert_eq!(ok(and(vec![flag("a")])), field_expr("a"));
    assert_eq!(ok(or(vec![flag("a")])), field_expr("a"));
    assert_eq!(ok(xor(vec![flag("a")])), field_expr("a"));
    let empty_in = wrap(node::Kind::InList(node::InList {
        path: "geo/city".into(),
        values: vec![],
        negated: false,
    }));
    assert_eq!(ok(empty_in), nobody_expr());
    assert_eq!(ok(keys(&[])), nobody_expr());
}

#[test]
fn keys_follow_the_table_key_kind() {
    let n = keys(&["42", "not-a-number", "7"]);
    assert_eq!(
        ast(&n, KeyKind::U64, 64).unwrap(),
        Expr::Keys(vec![Literal::Int(42), Literal::Int(7)])
    );
    assert_eq!(ast(&keys(&["x"]), KeyKind::U64, 64).unwrap(), nobody_expr());
    let huge = keys(&["18446744073709551615"]);
    assert_eq!(
        ast(&huge, KeyKind::U64, 64).unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[test]
fn malformed_trees_are_refused() {
    assert!(refused(v1::Node { kind: None }).contains("no kind"));
    assert!(refused(flag("")).contains("invalid path"));
    assert!(refused(flag("a//b")).contains("invalid path"));
    assert!(refused(compare("age", v1::CompareOp::Unspecified, i(1))).contains("op must be"));
    let unknown_op = wrap(node::Kind::Compare(node::Compare {
        path: "age".into(),
        op: 99,
        value: Some(i(1)),
    }));
    assert!(refused(unknown_op).contains("op must be"));
    let no_value = wrap(node::Kind::Compare(node::Compare {
        path: "age".into(),
        op: v1::CompareOp::Eq.into(),
        value: None,
    }));
    assert!(refused(no_value).contains("missing"));
    let empty_literal = compare("age", v1::CompareOp::Eq, v1::Literal { value: None });
    assert!(refused(empty_literal).contains("missing"));
    let no_high = wrap(node::Kind::Between(node::Between {
        path: "age".into(),
        low: Some(i(1)),
        high: None,
    }));
    assert!(refused(no_high).contains("high"));
    let empty_not_in = wrap(node::Kind::InList(node::InList {
        path: "geo/city".into(),
        values: vec![],
        negated: true,
    }));
    assert!(refused(empty_not_in).contains("NOT IN"));
    assert!(refused(has("interest", v1::HasMode::Unspecified, vec![s("x")])).contains("mode"));
    assert!(refused(has("interest", v1::HasMode::One, vec![])).contains("exactly one"));
    assert!(
        refused(has("interest", v1::HasMode::One, vec![s("a"), s("b")])).contains("exactly one")
    );
    assert!(refused(has("interest", v1::HasMode::Any, vec![])).contains("at least one"));
    assert!(refused(has("interest", v1::HasMode::All, vec![])).contains("at least one"));
    let no_operand = wrap(node::Kind::LogicalNot(Box::new(node::Not {
        operand: None,
    })));
    assert!(refused(no_operand).contains("no operand"));
    let bad_in_and = and(vec![flag("a"), v1::Node { kind: None }]);
    assert!(refused(bad_in_and).contains("no kind"));
}

#[test]
fn bad_literals_are_refused() {
    let date = |d: &str| lit(v1::literal::Value::DateValue(d.into()));
    let dec = |d: &str| lit(v1::literal::Value::DecimalValue(d.into()));
    for bad in ["2026-02-30", "2026-1-5", "yesterday", ""] {
        let message = refused(compare("t", v1::CompareOp::Ge, date(bad)));
        assert!(message.contains("calendar date"), "{message}");
    }
    for bad in ["", "-", "1.", ".5", "1e3", "1,5", "0x10", "1.2.3", " 1"] {
        let message = refused(compare("d", v1::CompareOp::Ge, dec(bad)));
        assert!(message.contains("decimal"), "{bad:?}: {message}");
    }
    let too_long = format!("1.{}", "0".repeat(39));
    assert!(refused(compare("d", v1::CompareOp::Ge, dec(&too_long))).contains("digits"));
}

#[test]
fn depth_is_bounded() {
    let mut deep = flag("a");
    for _ in 0..10 {
        deep = not(deep);
    }
    assert!(ast(&deep, KeyKind::Str, 10).is_ok());
    let status = ast(&not(deep.clone()), KeyKind::Str, 10).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("10 connectives"),
        "{}",
        status.message()
    );
    let wide_and_deep = and(vec![flag("b"), or(vec![deep, flag("c")])]);
    assert!(ast(&wide_and_deep, KeyKind::Str, 11).is_err());
    assert!(ast(&wide_and_deep, KeyKind::Str, 12).is_ok());
}

#[test]
fn request_expressions_in_both_faces() {
    let limits = Limits::default();
    let text = v1::Expr {
        kind: Some(v1::expr::Kind::Text("vip AND NOT risk/blacklist".into())),
    };
    let tree = v1::Expr {
        kind: Some(v1::expr::Kind::Ast(and(vec![
            flag("vip"),
            not(flag("risk/blacklist")),
        ]))),
    };
    let a = expr(Some(&text), "expr", KeyKind::Str, &limits).unwrap();
    let b = expr(Some(&tree), "expr", KeyKind::Str, &limits).unwrap();
    assert_eq!(a, b);

    let missing = expr(None, "base", KeyKind::Str, &limits).unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("base is required"));
    let unset = expr(
        Some(&v1::Expr { kind: None }),
        "expr",
        KeyKind::Str,
        &limits,
    );
    assert_eq!(unset.unwrap_err().code(), Code::InvalidArgument);

    let broken = v1::Expr {
        kind: Some(v1::expr::Kind::Text("vip AND\n  age >=".into())),
    };
    let status = expr(Some(&broken), "expr", KeyKind::Str, &limits).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().ends_with("at line 2, column 9"),
        "{}",
        status.message()
    );
    assert_eq!(status.metadata().get("x-portrait-line").unwrap(), "2");

    let small = Limits {
        max_expr_bytes: 8,
        ..Limits::default()
    };
    let status = expr(Some(&text), "expr", KeyKind::Str, &small).unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limit is 8"),
        "{}",
        status.message()
    );
}

#[test]
fn literals() {
    use v1::literal::Value as V;
    assert_eq!(
        literal_value(&V::StringValue("x".into())),
        Ok(Literal::Str("x".into()))
    );
    assert_eq!(literal_value(&V::IntValue(-3)), Ok(Literal::Int(-3)));
    assert_eq!(literal_value(&V::BoolValue(true)), Ok(Literal::Bool(true)));
    assert_eq!(
        literal_value(&V::DateValue("2026-11-25".into())),
        Ok(Literal::Date(Date::new(2026, 11, 25).unwrap()))
    );
    let d = |m, s| Literal::Decimal(Decimal::new(m, s).unwrap());
    assert_eq!(parse_decimal("12.50"), Ok(d(1250, 2)));
    assert_eq!(parse_decimal("-0.05"), Ok(d(-5, 2)));
    assert_eq!(parse_decimal("+1.0"), Ok(d(10, 1)));
    assert_eq!(parse_decimal("12"), Ok(Literal::Int(12)));
    assert_eq!(parse_decimal("-12"), Ok(Literal::Int(-12)));
    assert!(
        parse_decimal("99999999999999999999").is_err(),
        "int overflow"
    );
    assert_eq!(
        parse_decimal("99999999999999999999.5"),
        Ok(d(999_999_999_999_999_999_995, 1))
    );
}

#[test]
fn decimals_render_exactly() {
    assert_eq!(decimal_string(1250, 2), "12.50");
    assert_eq!(decimal_string(-5, 2), "-0.05");
    assert_eq!(decimal_string(0, 2), "0.00");
    assert_eq!(decimal_string(7, 0), "7");
    assert_eq!(decimal_string(-123_456, 3), "-123.456");
    assert_eq!(
        decimal_string(i128::from(i64::MIN), 2),
        "-92233720368547758.08"
    );
    assert_eq!(
        value(&Value::Decimal {
            units: 1250,
            scale: 2
        }),
        v1::Value {
            kind: Some(v1::value::Kind::DecimalValue("12.50".into()))
        }
    );
}

#[test]
fn values_on_the_wire() {
    use v1::value::Kind as K;
    let kind = |v: &Value| value(v).kind.unwrap();
    assert_eq!(kind(&Value::Flag), K::FlagValue(true));
    assert_eq!(kind(&Value::Str("f".into())), K::StringValue("f".into()));
    assert_eq!(
        kind(&Value::Strs(vec!["a".into(), "b".into()])),
        K::SetValue(v1::StringSet {
            values: vec!["a".into(), "b".into()]
        })
    );
    assert_eq!(kind(&Value::Int(-4)), K::IntValue(-4));
    assert_eq!(
        kind(&Value::Timestamp(86_400_000)),
        K::TimestampUnixMs(86_400_000)
    );
    let dec2 = FieldKind::Decimal { scale: 2 };
    assert_eq!(
        numeric_value(dec2, 1999).kind.unwrap(),
        K::DecimalValue("19.99".into())
    );
    assert_eq!(
        numeric_value(FieldKind::Int, 5).kind.unwrap(),
        K::IntValue(5)
    );
    assert_eq!(
        numeric_value(FieldKind::Timestamp, 9).kind.unwrap(),
        K::TimestampUnixMs(9)
    );
    assert_eq!(sum_value(FieldKind::Timestamp, 10), None);
    assert_eq!(
        sum_value(FieldKind::Int, 10).unwrap().kind.unwrap(),
        K::IntValue(10)
    );
    let big = i128::from(i64::MAX) + 1;
    assert_eq!(
        sum_value(FieldKind::Int, big).unwrap().kind.unwrap(),
        K::DecimalValue("9223372036854775808".into())
    );
    assert_eq!(
        sum_value(dec2, 12345).unwrap().kind.unwrap(),
        K::DecimalValue("123.45".into())
    );
    assert_eq!(in_field_units(dec2, 1250.0), 12.5);
}

#[test]
fn bounds_in_stored_units_round_up() {
    let dec2 = FieldKind::Decimal { scale: 2 };
    let d = |m, s| Literal::Decimal(Decimal::new(m, s).unwrap());
    assert_eq!(ceil_units(FieldKind::Int, &Literal::Int(7)), Some(7));
    assert_eq!(ceil_units(FieldKind::Int, &d(75, 1)), Some(8));
    assert_eq!(ceil_units(FieldKind::Int, &d(-75, 1)), Some(-7));
    assert_eq!(ceil_units(dec2, &Literal::Int(3)), Some(300));
    assert_eq!(ceil_units(dec2, &d(15, 1)), Some(150));
    assert_eq!(ceil_units(dec2, &d(12_345, 3)), Some(1235));
    assert_eq!(
        ceil_units(
            FieldKind::Timestamp,
            &Literal::Date(Date::new(1970, 1, 2).unwrap())
        ),
        Some(86_400_000)
    );
    assert_eq!(ceil_units(FieldKind::Timestamp, &Literal::Int(5)), Some(5));
    assert_eq!(ceil_units(FieldKind::Int, &Literal::Str("5".into())), None);
    assert_eq!(ceil_units(dec2, &Literal::Int(i64::MAX)), None, "overflow");
    assert_eq!(days_from_civil(2026, 11, 25), 20_782);
}

#[test]
fn keys_and_cursors() {
    assert_eq!(key(KeyKind::Str, "u1"), Some(Key::Str("u1".into())));
    assert_eq!(key(KeyKind::U64, "42"), Some(Key::U64(42)));
    assert_eq!(key(KeyKind::U64, "u1"), None);
    for id in [0, 1, 4095, u64::from(u32::MAX)] {
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), Some(id));
    }
    assert_eq!(decode_cursor("").unwrap(), None);
    for bad in ["12", "m1.", "m1.xyz", "m2.10"] {
        assert_eq!(
            decode_cursor(bad).unwrap_err().code(),
            Code::InvalidArgument,
            "{bad}"
        );
    }
}

#[test]
fn catalog_entries() {
    assert!(under_prefix("interest/sports", "interest"));
    assert!(under_prefix("interest/sports", "interest/"));
    assert!(under_prefix("interest", "interest"));
    assert!(!under_prefix("interests", "interest"));
    assert!(under_prefix("anything", ""));

    let meta = FieldMeta {
        id: 3,
        spec: FieldSpec::new("risk/blacklist", FieldKind::Flag)
            .description("d")
            .owner("o")
            .sensitivity("sensitive"),
        created_ms: 10,
        updated_ms: 20,
    };
    let version = |label: &str, users| VersionInfo {
        label: label.into(),
        created_ms: 1,
        users,
        distinct: 1,
        bytes: 0,
    };
    let f = super::field(&meta, &[version("2026-11-24", 5), version("2026-11-25", 7)]);
    assert_eq!(f.path, "risk/blacklist");
    assert_eq!(f.kind(), v1::FieldKind::Flag);
    assert_eq!(f.sensitivity(), v1::Sensitivity::Sensitive);
    assert_eq!(f.freshness(), v1::Freshness::Offline);
    assert_eq!((f.description.as_str(), f.owner.as_str()), ("d", "o"));
    assert_eq!(f.versions[0].label, "2026-11-25", "newest first");
    assert_eq!(f.stats.unwrap().users_covered, 7);
    assert_eq!(sensitivity(""), v1::Sensitivity::Public);
    assert_eq!(sensitivity("internal"), v1::Sensitivity::Internal);

    assert_eq!(
        key_kind_from_wire(v1::KeyKind::U64.into()).unwrap(),
        KeyKind::U64
    );
    assert_eq!(
        key_kind_from_wire(0).unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(key_kind(KeyKind::Str), v1::KeyKind::String);
}

#[test]
fn catalog_tree() {
    let fields = [
        ("interest/sports/running", FieldKind::Flag),
        ("interest/sports", FieldKind::Flag),
        ("demographic/age", FieldKind::Int),
        ("interest/music", FieldKind::Flag),
    ];
    let root = tree(fields, "").unwrap();
    assert_eq!(root.name, "");
    let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["demographic", "interest"]);
    let interest = &root.children[1];
    assert!(!interest.is_field);
    let names: Vec<&str> = interest.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["music", "sports"]);
    let sports = &interest.children[1];
    assert!(sports.is_field);
    assert_eq!(sports.path, "interest/sports");
    assert_eq!(sports.children[0].path, "interest/sports/running");
    assert_eq!(sports.children[0].kind(), v1::FieldKind::Flag);

    let sub = tree(fields, "interest/sports").unwrap();
    assert_eq!(
        (sub.name.as_str(), sub.path.as_str()),
        ("sports", "interest/sports")
    );
    assert!(sub.is_field);
    assert_eq!(sub.children.len(), 1);
    assert!(tree(fields, "interests").is_none());
}

#[test]
fn plans() {
    let leaf = ExplainNode {
        label: "flag vip".into(),
        estimated: 10,
        actual: 8,
        micros: 3,
        children: vec![],
    };
    let root = ExplainNode {
        label: "AND".into(),
        estimated: 10,
        actual: 8,
        micros: 5,
        children: vec![leaf],
    };
    let planned = plan_node(&root, false);
    assert_eq!(planned.actual_cardinality, None);
    assert_eq!(planned.children[0].estimated_cardinality, 10);
    let analysed = plan_node(&root, true);
    assert_eq!(analysed.children[0].actual_cardinality, Some(8));
    assert_eq!(analysed.time_us, Some(5));
    assert_eq!(
        plan_text(&root, false),
        "AND  (estimated 10)\n  flag vip  (estimated 10)\n"
    );
    assert!(plan_text(&root, true).contains("actual 8"));
}

// --- behaviour predicates --------------------------------------------------------------------

fn window(kind: v1::window::Kind) -> Option<v1::Window> {
    Some(v1::Window { kind: Some(kind) })
}

fn last_days(days: u32, ending: &str) -> Option<v1::Window> {
    window(v1::window::Kind::Last(v1::window::LastDays {
        days,
        ending: ending.into(),
    }))
}

fn did(event: &str, window: Option<v1::Window>, count: Option<v1::DidCount>) -> v1::Node {
    wrap(node::Kind::Did(node::Did {
        event: event.into(),
        window,
        count,
    }))
}

fn occurred(which: v1::Occurrence, test: Option<node::occurred::Test>) -> v1::Node {
    wrap(node::Kind::Occurred(node::Occurred {
        which: which.into(),
        event: "login".into(),
        test,
    }))
}

fn d(text: &str) -> Date {
    Date::parse_iso(text).unwrap()
}

#[test]
fn behaviour_nodes_convert() {
    use node::occurred::{DaysAgo, OnDate, Test};

    assert_eq!(
        ok(did("purchase", last_days(7, ""), None)),
        Expr::Did {
            event: p("purchase"),
            window: Window::Last {
                days: 7,
                ending: None
            },
            count: None,
        }
    );
    let count = |measure: v1::Measure| {
        Some(v1::DidCount {
            op: v1::CompareOp::Ge.into(),
            n: 2,
            measure: measure.into(),
        })
    };
    for (wire, engine) in [
        (v1::Measure::Times, Measure::Times),
        (v1::Measure::Unspecified, Measure::Times),
        (v1::Measure::Days, Measure::Days),
    ] {
        assert_eq!(
            ok(did("app/open", last_days(1, "2026-11-20"), count(wire))),
            Expr::Did {
                event: p("app/open"),
                window: Window::Last {
                    days: 1,
                    ending: Some(d("2026-11-20"))
                },
                count: Some(DidCount {
                    op: CmpOp::Ge,
                    n: 2,
                    measure: engine
                }),
            },
            "{wire:?}"
        );
    }
    let range = window(v1::window::Kind::Range(v1::DateRange {
        first: "2026-11-01".into(),
        last: "2026-11-07".into(),
    }));
    assert_eq!(
        ok(did("x", range, None)),
        Expr::Did {
            event: p("x"),
            window: Window::Range {
                from: d("2026-11-01"),
                to: d("2026-11-07")
            },
            count: None,
        }
    );
    let ever = window(v1::window::Kind::Ever(v1::window::Ever {}));
    assert!(matches!(
        ok(did("x", ever, None)),
        Expr::Did {
            window: Window::Ever,
            ..
        }
    ));

    let cases = [
        (
            v1::Occurrence::Last,
            Test::DaysAgo(DaysAgo {
                op: v1::CompareOp::Gt.into(),
                days: 30,
            }),
            Occurrence::Last,
            When::DaysAgo {
                op: CmpOp::Gt,
                days: 30,
            },
        ),
        (
            v1::Occurrence::First,
            Test::OnDate(OnDate {
                op: v1::CompareOp::Le.into(),
                date: "2026-11-02".into(),
            }),
            Occurrence::First,
            When::Date {
                op: CmpOp::Le,
                date: d("2026-11-02"),
            },
        ),
        (
            v1::Occurrence::First,
            Test::WithinDays(7),
            Occurrence::First,
            When::Within(7),
        ),
    ];
    for (wire_which, test, which, when) in cases {
        assert_eq!(
            ok(occurred(wire_which, Some(test))),
            Expr::Occurred {
                which,
                event: p("login"),
                when
            }
        );
    }
}

#[test]
fn malformed_behaviour_nodes_are_refused() {
    use node::occurred::{DaysAgo, OnDate, Test};

    let cases = [
        (did("x", None, None), "the window is missing"),
        (
            did("x", Some(v1::Window { kind: None }), None),
            "the window is missing",
        ),
        (did("x", last_days(0, ""), None), "last 0 days"),
        (
            did("x", last_days(3, "2026-02-30"), None),
            "ending: \"2026-02-30\"",
        ),
        (
            did(
                "x",
                window(v1::window::Kind::Range(v1::DateRange {
                    first: "2026-11-07".into(),
                    last: "2026-11-01".into(),
                })),
                None,
            ),
            "before it starts",
        ),
        (
            did(
                "x",
                window(v1::window::Kind::Range(v1::DateRange {
                    first: String::new(),
                    last: "2026-11-01".into(),
                })),
                None,
            ),
            "range.first: the date is missing",
        ),
        (
            did(
                "x",
                last_days(7, ""),
                Some(v1::DidCount {
                    op: 0,
                    n: 2,
                    measure: 0,
                }),
            ),
            "did on `x`: op must be one of",
        ),
        (did("", last_days(7, ""), None), "did: invalid path"),
        (
            occurred(v1::Occurrence::Unspecified, Some(Test::WithinDays(3))),
            "which must be FIRST or LAST",
        ),
        (occurred(v1::Occurrence::Last, None), "set one test"),
        (
            occurred(v1::Occurrence::Last, Some(Test::WithinDays(0))),
            "within_days must be at least 1",
        ),
        (
            occurred(
                v1::Occurrence::Last,
                Some(Test::DaysAgo(DaysAgo { op: 9, days: 3 })),
            ),
            "op must be one of",
        ),
        (
            occurred(
                v1::Occurrence::Last,
                Some(Test::OnDate(OnDate {
                    op: v1::CompareOp::Gt.into(),
                    date: "11/02/2026".into(),
                })),
            ),
            "is not a calendar date",
        ),
    ];
    for (n, expected) in cases {
        let message = refused(n.clone());
        assert!(message.contains(expected), "{n:?}: {message}");
    }
}

#[test]
fn parsed_expressions_survive_the_structured_form() {
    let texts = [
        "ALL",
        "vip AND NOT risk/blacklist",
        "demographic/gender = 'female' AND demographic/age BETWEEN 18 AND 30",
        "geo/city IN ('Beijing', 'Shanghai') OR geo/city NOT IN ('x')",
        "interest HAS 'sports' XOR interest HAS ANY ('a', 'b') XOR interest HAS ALL ('c', 'd')",
        "commerce/total_spend >= 100.50 AND account/registered < DATE '2026-01-01'",
        "KEYS('u1', 'u2') OR flag = TRUE",
        "did(purchase, last 7 days) >= 2 AND NOT did(login, last 30 days)",
        "did(app/open, last 1 day ending DATE '2026-11-20') on < 3 days",
        "did(x, DATE '2026-11-01' TO DATE '2026-11-07') = 1 times OR did(x, ever)",
        "last_did(login) > 30 days ago AND first_did(pay) within 7 days",
        "first_did(pay) <= DATE '2026-11-02'",
    ];
    for text in texts {
        let parsed = expr::parse(text).unwrap();
        let wire = node(&parsed).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ok(wire), parsed, "{text}");
    }
}

#[test]
fn behaviour_request_fields() {
    let range = |first: &str, last: &str| v1::DateRange {
        first: first.into(),
        last: last.into(),
    };
    let week = day_range(Some(&range("2026-11-01", "2026-11-07")), "cohorts").unwrap();
    assert_eq!(week.len(), 7);
    assert_eq!(day_text(week.first), "2026-11-01");
    assert_eq!(day_text(week.last), "2026-11-07");
    assert_eq!(day("1970-01-02", "x").unwrap(), 1);

    let refusal = |r: Result<DayRange, Status>| {
        let status = r.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        status.message().to_owned()
    };
    assert!(refusal(day_range(None, "cohorts")).starts_with("cohorts is required"));
    assert!(
        refusal(day_range(Some(&range("2026-11-07", "2026-11-01")), "days"))
            .contains("days ends (2026-11-01) before it starts (2026-11-07)")
    );
    assert!(
        refusal(day_range(
            Some(&range("2026-11-01", "2026-13-01")),
            "starts"
        ))
        .starts_with("starts.last: \"2026-13-01\" is not a calendar date")
    );

    assert_eq!(reference_day(&None).unwrap(), None);
    assert_eq!(reference_day(&Some(String::new())).unwrap(), None);
    assert_eq!(
        reference_day(&Some("2026-11-25".into())).unwrap(),
        Some(behaviour::day_of_date(2026, 11, 25))
    );
    assert!(
        reference_day(&Some("yesterday".into()))
            .unwrap_err()
            .message()
            .starts_with("reference_date:")
    );

    assert_eq!(period(0).unwrap(), Period::Day);
    assert_eq!(period(v1::Period::Week.into()).unwrap(), Period::Week);
    assert_eq!(period(v1::Period::Month.into()).unwrap(), Period::Month);
    assert_eq!(period(42).unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(frequency_measure(0).unwrap(), Measure::Days);
    assert_eq!(
        frequency_measure(v1::Measure::Times.into()).unwrap(),
        Measure::Times
    );
    assert_eq!(
        frequency_measure(7).unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(rate(1, 4), 0.25);
    assert_eq!(rate(3, 0), 0.0);
}

// --- real-time writes ------------------------------------------------------------------------

fn field_write(key: &str, path: &str, change: Option<v1::field_write::Change>) -> v1::FieldWrite {
    v1::FieldWrite {
        key: key.into(),
        path: path.into(),
        change,
    }
}

fn set(key: &str, path: &str, value: v1::value::Kind) -> v1::FieldWrite {
    field_write(
        key,
        path,
        Some(v1::field_write::Change::Value(v1::Value {
            kind: Some(value),
        })),
    )
}

#[test]
fn writes_convert_by_value_kind() {
    use v1::value::Kind as K;
    let wire = vec![
        set("u1", "vip", K::FlagValue(true)),
        set("u1", "vip", K::FlagValue(false)),
        field_write("u2", "city", Some(v1::field_write::Change::Clear(true))),
        set("u3", "city", K::StringValue("Beijing".into())),
        set(
            "u3",
            "tags",
            K::SetValue(v1::StringSet {
                values: vec!["a".into(), "b".into()],
            }),
        ),
        set("u3", "age", K::IntValue(-4)),
        set("u3", "spend", K::DecimalValue("12.50".into())),
        set("u3", "spend", K::DecimalValue("-7".into())),
        set("u3", "seen", K::TimestampUnixMs(1_764_028_800_000)),
        field_write(
            "u3",
            "login",
            Some(v1::field_write::Change::Event(v1::EventAppend {
                at_unix_ms: 5,
                count: 0,
            })),
        ),
        field_write(
            "u3",
            "login",
            Some(v1::field_write::Change::Event(v1::EventAppend {
                at_unix_ms: 6,
                count: 3,
            })),
        ),
    ];
    let got = writes(KeyKind::Str, wire).unwrap();
    let changes: Vec<Change> = got.iter().map(|w| w.change.clone()).collect();
    assert_eq!(
        changes,
        [
            Change::Set(Value::Flag),
            Change::Clear,
            Change::Clear,
            Change::Set(Value::Str("Beijing".into())),
            Change::Set(Value::Strs(vec!["a".into(), "b".into()])),
            Change::Set(Value::Int(-4)),
            Change::Set(Value::Decimal {
                units: 1250,
                scale: 2
            }),
            Change::Set(Value::Decimal {
                units: -7,
                scale: 0
            }),
            Change::Set(Value::Timestamp(1_764_028_800_000)),
            Change::Event { at_ms: 5, count: 1 },
            Change::Event { at_ms: 6, count: 3 },
        ]
    );
    assert_eq!(got[0].key, Key::Str("u1".into()));
    assert_eq!(got[3].path, "city");
}

#[test]
fn write_keys_follow_the_table_key_kind() {
    use v1::value::Kind as K;
    let got = writes(KeyKind::U64, vec![set("42", "age", K::IntValue(1))]).unwrap();
    assert_eq!(got[0].key, Key::U64(42));
    let status = writes(
        KeyKind::U64,
        vec![
            set("42", "age", K::IntValue(1)),
            set("u42", "age", K::IntValue(1)),
        ],
    )
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("write 1: key \"u42\""),
        "{}",
        status.message()
    );
}

#[test]
fn malformed_writes_name_their_index() {
    use v1::value::Kind as K;
    let cases = [
        (field_write("u1", "vip", None), "no change for `vip`"),
        (
            field_write("u1", "vip", Some(v1::field_write::Change::Clear(false))),
            "`clear` of `vip` is false",
        ),
        (
            field_write(
                "u1",
                "vip",
                Some(v1::field_write::Change::Value(v1::Value { kind: None })),
            ),
            "has no kind set",
        ),
        (
            set("u1", "spend", K::DecimalValue("12,50".into())),
            "not a decimal number",
        ),
        (
            set(
                "u1",
                "spend",
                K::DecimalValue("99999999999999999999.5".into()),
            ),
            "too many digits",
        ),
    ];
    for (w, expected) in cases {
        let status = writes(KeyKind::Str, vec![w]).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("write 0: ") && status.message().contains(expected),
            "{} lacks {expected:?}",
            status.message()
        );
    }
}
