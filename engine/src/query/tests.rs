//! Every crowd operation against a naive evaluator over per-user values.
//!
//! The table spans three shards, but only a few hundred users (many on shard boundaries) carry
//! data; every other user has no value at all and so answers every predicate the same way. The
//! model therefore keeps results as (set of data-carrying users, whether the others are in),
//! which makes `NOT` of everything as cheap to check as anything else.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::analysis::{Buckets, FlagCounting, TopOrder, TopRow};
use crate::expr::{CmpOp, Expr, HasMode, Literal, Path};
use crate::{Database, FieldKind, FieldSpec, KeyKind, KeyRef, SHARD_BITS, Value};

const SHARD: u32 = 1 << SHARD_BITS;
const USERS: u32 = 2 * SHARD + 500;
const CITIES: [&str; 4] = ["bj", "sh", "gz", "sz"];
const INTERESTS: [&str; 3] = ["sports", "music", "games"];

#[derive(Debug, Default)]
struct Model {
    flags: [BTreeSet<u32>; 3],
    city: BTreeMap<u32, &'static str>,
    interest: BTreeMap<u32, BTreeSet<&'static str>>,
    age: BTreeMap<u32, i64>,
    /// Users carrying any data.
    universe: BTreeSet<u32>,
}

/// A model result: the data-carrying members, and whether every other user is a member.
#[derive(Debug, Clone, PartialEq)]
struct Res {
    set: BTreeSet<u32>,
    rest: bool,
}

impl Model {
    fn generate(rng: &mut Rng) -> Self {
        let mut m = Model::default();
        let pick = |rng: &mut Rng| -> u32 {
            match rng.gen_range(0u32..4) {
                0 => rng.gen_range(0u32..40),
                1 => rng.gen_range(SHARD - 30..SHARD + 30),
                2 => rng.gen_range(2 * SHARD - 30..2 * SHARD + 30),
                _ => rng.gen_range(USERS - 40..USERS),
            }
        };
        for _ in 0..260 {
            let id = pick(rng);
            m.universe.insert(id);
            for f in 0..3 {
                if rng.gen_bool([0.5, 0.2, 0.05][f]) {
                    m.flags[f].insert(id);
                }
            }
            if rng.gen_bool(0.7) {
                m.city.insert(
                    id,
                    CITIES[rng.gen_range(0u32..CITIES.len() as u32) as usize],
                );
            }
            if rng.gen_bool(0.5) {
                let n = rng.gen_range(1u32..4);
                let s = (0..n)
                    .map(|_| INTERESTS[rng.gen_range(0u32..3) as usize])
                    .collect();
                m.interest.insert(id, s);
            }
            if rng.gen_bool(0.6) {
                m.age.insert(id, rng.gen_range(10u32..70) as i64);
            }
        }
        m
    }

    fn eval(&self, e: &Expr) -> Res {
        let pred = |f: &dyn Fn(u32) -> bool| Res {
            set: self.universe.iter().copied().filter(|&u| f(u)).collect(),
            rest: false,
        };
        match e {
            Expr::All => Res {
                set: self.universe.clone(),
                rest: true,
            },
            Expr::Field(p) => {
                let i = flag_index(p.as_str());
                pred(&|u| self.flags[i].contains(&u))
            }
            Expr::Compare { path, op, value } => match (path.as_str(), value) {
                ("city", Literal::Str(v)) => {
                    let eq = *op == CmpOp::Eq;
                    pred(&|u| self.city.get(&u).is_some_and(|c| (*c == v.as_str()) == eq))
                }
                ("age", Literal::Int(c)) => {
                    pred(&|u| self.age.get(&u).is_some_and(|a| op.holds(*a, *c)))
                }
                (p, Literal::Bool(b)) => {
                    let i = flag_index(p);
                    let want = (*op == CmpOp::Eq) == *b;
                    let r = pred(&|u| self.flags[i].contains(&u) == want);
                    Res { rest: !want, ..r }
                }
                other => unreachable!("generator never builds {other:?}"),
            },
            Expr::In {
                path,
                values,
                negated,
            } => {
                assert_eq!(path.as_str(), "city");
                let vs: Vec<&str> = values.iter().map(lit_str).collect();
                pred(&|u| {
                    self.city
                        .get(&u)
                        .is_some_and(|c| vs.contains(c) != *negated)
                })
            }
            Expr::Between {
                low: Literal::Int(lo),
                high: Literal::Int(hi),
                ..
            } => pred(&|u| self.age.get(&u).is_some_and(|a| lo <= a && a <= hi)),
            Expr::Has { mode, values, .. } => {
                let vs: Vec<&str> = values.iter().map(lit_str).collect();
                pred(&|u| {
                    self.interest.get(&u).is_some_and(|s| match mode {
                        HasMode::All => vs.iter().all(|v| s.contains(v)),
                        _ => vs.iter().any(|v| s.contains(v)),
                    })
                })
            }
            Expr::Keys(keys) => {
                let ids: BTreeSet<u32> = keys
                    .iter()
                    .filter_map(|k| match k {
                        Literal::Int(i) => u32::try_from((*i - 3) / 7)
                            .ok()
                            .filter(|id| key(*id) == *i as u64 && *id < USERS),
                        _ => None,
                    })
                    .collect();
                assert!(
                    ids.iter().all(|i| self.universe.contains(i)),
                    "generator only names data users"
                );
                Res {
                    set: ids,
                    rest: false,
                }
            }
            Expr::Not(x) => {
                let r = self.eval(x);
                Res {
                    set: self.universe.difference(&r.set).copied().collect(),
                    rest: !r.rest,
                }
            }
            Expr::And(xs) => xs
                .iter()
                .map(|x| self.eval(x))
                .reduce(|a, b| Res {
                    set: a.set.intersection(&b.set).copied().collect(),
                    rest: a.rest && b.rest,
                })
                .expect("operands"),
            Expr::Or(xs) => xs
                .iter()
                .map(|x| self.eval(x))
                .reduce(|a, b| Res {
                    set: a.set.union(&b.set).copied().collect(),
                    rest: a.rest || b.rest,
                })
                .expect("operands"),
            Expr::Xor(xs) => xs
                .iter()
                .map(|x| self.eval(x))
                .reduce(|a, b| Res {
                    set: a.set.symmetric_difference(&b.set).copied().collect(),
                    rest: a.rest != b.rest,
                })
                .expect("operands"),
            other => unreachable!("generator never builds {other:?}"),
        }
    }

    fn count(&self, r: &Res) -> u64 {
        r.set.len() as u64
            + if r.rest {
                (USERS as usize - self.universe.len()) as u64
            } else {
                0
            }
    }
}

/// A small seeded generator for the fixture data (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn gen_range<T: TryFrom<u64> + Into<u64> + Copy>(&mut self, r: std::ops::Range<T>) -> T
    where
        <T as TryFrom<u64>>::Error: std::fmt::Debug,
    {
        let (lo, hi) = (r.start.into(), r.end.into());
        T::try_from(lo + self.next() % (hi - lo)).unwrap()
    }
    fn gen_bool(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

fn lit_str(l: &Literal) -> &str {
    match l {
        Literal::Str(s) => s,
        _ => unreachable!(),
    }
}

fn flag_index(p: &str) -> usize {
    ["tag/a", "tag/b", "tag/c"]
        .iter()
        .position(|x| *x == p)
        .expect("known flag")
}

fn key(id: u32) -> u64 {
    id as u64 * 7 + 3
}

fn path(p: &str) -> Path {
    Path::new(p).unwrap()
}

fn s(v: &str) -> Literal {
    Literal::Str(v.to_owned())
}

fn leaf(ids: Vec<u32>) -> impl Strategy<Value = Expr> {
    let city = prop_oneof![
        Just("bj"),
        Just("sh"),
        Just("gz"),
        Just("sz"),
        Just("nowhere")
    ];
    let interest = prop_oneof![
        Just("sports"),
        Just("music"),
        Just("games"),
        Just("knitting")
    ];
    prop_oneof![
        Just(Expr::All),
        prop_oneof![Just("tag/a"), Just("tag/b"), Just("tag/c")].prop_map(|p| Expr::Field(path(p))),
        (
            prop_oneof![Just("tag/a"), Just("tag/c")],
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(p, eq, b)| Expr::Compare {
                path: path(p),
                op: if eq { CmpOp::Eq } else { CmpOp::Ne },
                value: Literal::Bool(b),
            }),
        (city.clone(), any::<bool>()).prop_map(|(c, eq)| Expr::Compare {
            path: path("city"),
            op: if eq { CmpOp::Eq } else { CmpOp::Ne },
            value: s(c),
        }),
        (proptest::collection::vec(city, 1..4), any::<bool>()).prop_map(|(cs, negated)| Expr::In {
            path: path("city"),
            values: cs.into_iter().map(s).collect(),
            negated,
        }),
        age_comparison(),
        (interest.clone()).prop_map(|v| Expr::Has {
            path: path("interest"),
            mode: HasMode::One,
            values: vec![s(v)]
        }),
        (proptest::collection::vec(interest, 1..3), any::<bool>()).prop_map(|(vs, all)| {
            Expr::Has {
                path: path("interest"),
                mode: if all { HasMode::All } else { HasMode::Any },
                values: vs.into_iter().map(s).collect(),
            }
        }),
        proptest::sample::subsequence(ids, 1..4).prop_map(|ids| Expr::Keys(
            ids.into_iter()
                .map(|i| Literal::Int(key(i) as i64))
                .collect()
        )),
    ]
}

fn expr(ids: Vec<u32>) -> impl Strategy<Value = Expr> {
    leaf(ids).prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            proptest::collection::vec(inner, 2..3).prop_map(Expr::Xor),
        ]
    })
}

fn build() -> (tempfile::TempDir, Database, Model) {
    let mut rng = Rng(0x0dd_ba11);
    let m = Model::generate(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let mut load = t.load("v1").unwrap();
    for id in 0..USERS {
        load.user(KeyRef::U64(key(id))).unwrap();
    }
    let flags: Vec<_> = ["tag/a", "tag/b", "tag/c"]
        .iter()
        .map(|p| load.field(FieldSpec::new(*p, FieldKind::Flag)).unwrap())
        .collect();
    let city = load.field(FieldSpec::new("city", FieldKind::Enum)).unwrap();
    let interest = load
        .field(FieldSpec::new("interest", FieldKind::Set))
        .unwrap();
    let age = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
    for (i, f) in flags.iter().enumerate() {
        for &id in &m.flags[i] {
            load.flag_id(*f, id).unwrap();
        }
    }
    for (&id, c) in &m.city {
        load.value_id(city, id, Value::Str(c.to_string())).unwrap();
    }
    for (&id, vs) in &m.interest {
        load.value_id(
            interest,
            id,
            Value::Strs(vs.iter().map(|v| v.to_string()).collect()),
        )
        .unwrap();
    }
    for (&id, &a) in &m.age {
        load.value_id(age, id, Value::Int(a)).unwrap();
    }
    load.commit().unwrap();
    (dir, db, m)
}

#[test]
fn crowd_operations_match_the_naive_evaluator() {
    let (_dir, db, m) = build();
    let snap = db.table("users").unwrap().snapshot();
    let ids: Vec<u32> = m.universe.iter().copied().collect();
    let mut runner = TestRunner::new(crate::testutil::proptest_config(160));
    runner
        .run(
            &(expr(ids.clone()), expr(ids.clone()), any::<u64>()),
            |(e, e2, seed)| {
                let want = m.eval(&e);
                // The text form goes through the same planner.
                let crowd = snap.crowd_text(&e.to_string()).unwrap();
                prop_assert_eq!(crowd.count().unwrap(), m.count(&want), "count of {}", e);
                let bitmap = crowd.bitmap().unwrap();
                prop_assert_eq!(bitmap.cardinality(), m.count(&want));
                for &u in &ids {
                    prop_assert_eq!(
                        bitmap.contains(u),
                        want.set.contains(&u),
                        "bitmap, user {} in {}",
                        u,
                        e
                    );
                    prop_assert_eq!(
                        crowd.contains(KeyRef::U64(key(u))).unwrap(),
                        want.set.contains(&u),
                        "contains {} in {}",
                        u,
                        e
                    );
                }
                for outsider in [41u32, SHARD + 100, USERS - 100] {
                    if !m.universe.contains(&outsider) {
                        prop_assert_eq!(crowd.contains_id(outsider).unwrap(), want.rest);
                    }
                }
                prop_assert!(
                    !crowd.contains(KeyRef::U64(1)).unwrap(),
                    "unknown users are never members"
                );
                // Paging from a cursor in the middle of shard 1 sees exactly the members after it.
                // The first 3,000 members' keys, looked up on one core and on all of them.
                let want_keys: Vec<crate::Key> = bitmap
                    .iter()
                    .take(3_000)
                    .map(|i| crate::Key::U64(key(i)))
                    .collect();
                for parallel_from in [usize::MAX, 1] {
                    let page = crowd.members_with(None, 3_000, parallel_from).unwrap();
                    prop_assert_eq!(&page.keys, &want_keys);
                }
                let page = crowd.members(Some(SHARD as u64 - 5), 7).unwrap();
                let expect: Vec<u32> = bitmap.iter().filter(|&i| i > SHARD - 5).take(7).collect();
                let got: Vec<u64> = page
                    .keys
                    .iter()
                    .map(|k| match k {
                        crate::Key::U64(v) => *v,
                        _ => 0,
                    })
                    .collect();
                prop_assert_eq!(got, expect.iter().map(|&i| key(i)).collect::<Vec<_>>());
                // Samples are members, distinct, deterministic: the members at the seed's ranks,
                // in id order, over every shard.
                let sample = crowd.sample(40, seed).unwrap();
                prop_assert_eq!(sample.len() as u64, m.count(&want).min(40));
                prop_assert_eq!(&sample, &crowd.sample(40, seed).unwrap());
                for k in &sample {
                    prop_assert!(crowd.contains(k.as_ref()).unwrap());
                }
                let members: Vec<u32> = bitmap.iter().collect();
                let at_ranks: Vec<crate::Key> =
                    crate::analysis::pick_ranks(members.len() as u64, 40, seed)
                        .into_iter()
                        .map(|r| crate::Key::U64(key(members[r as usize])))
                        .collect();
                prop_assert_eq!(&sample, &at_ranks, "sample of {}", e);
                // Overlap against a second crowd.
                let other = snap.crowd(&e2).unwrap();
                let want2 = m.eval(&e2);
                let both = Res {
                    set: want.set.intersection(&want2.set).copied().collect(),
                    rest: want.rest && want2.rest,
                };
                let matrix = crate::analysis::overlap(&snap, &[crowd.clone(), other]).unwrap();
                prop_assert_eq!(matrix[0][1], m.count(&both));
                prop_assert_eq!(matrix[1][1], m.count(&want2));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn analyses_match_the_naive_evaluator() {
    let (_dir, db, m) = build();
    let snap = db.table("users").unwrap().snapshot();
    let ids: Vec<u32> = m.universe.iter().copied().collect();
    let mut runner = TestRunner::new(crate::testutil::proptest_config(60));
    runner
        .run(&expr(ids), |e| {
            let want = m.eval(&e);
            let members: BTreeSet<u32> = want.set.clone();
            let crowd = snap.crowd(&e).unwrap();
            let total = m.count(&want) as f64;

            // group by city: counts and TGI against all users.
            let rows = crowd.group_count(&["city"], None, 100).unwrap();
            for c in CITIES {
                let n = members.iter().filter(|u| m.city.get(u) == Some(&c)).count() as u64;
                let base = m.city.values().filter(|v| **v == c).count() as u64;
                let row = rows.iter().find(|r| r.values == [c]);
                prop_assert_eq!(row.map(|r| r.count).unwrap_or(0), n, "city {}", c);
                if let Some(r) = row {
                    prop_assert_eq!(r.base_count, base);
                    let tgi = (n as f64 / total) / (base as f64 / USERS as f64) * 100.0;
                    prop_assert!((r.tgi.unwrap() - tgi).abs() < 1e-6);
                }
            }
            prop_assert!(
                rows.windows(2).all(|w| w[0].count >= w[1].count),
                "sorted by count"
            );
            // group by city x interest
            let rows = crowd
                .group_count(&["city", "interest"], None, 1000)
                .unwrap();
            for r in &rows {
                let n = members
                    .iter()
                    .filter(|u| {
                        m.city.get(u) == Some(&r.values[0].as_str())
                            && m.interest
                                .get(u)
                                .is_some_and(|s| s.contains(r.values[1].as_str()))
                    })
                    .count() as u64;
                prop_assert_eq!(r.count, n);
            }
            // top tags under `tag`, by both counting strategies
            for counting in [
                FlagCounting::Auto,
                FlagCounting::Forward,
                FlagCounting::Bitmaps,
            ] {
                let top = crowd
                    .top_values_with("tag", 10, TopOrder::Count, counting, 0)
                    .unwrap();
                for (i, p) in ["tag/a", "tag/b", "tag/c"].iter().enumerate() {
                    let n = members.iter().filter(|u| m.flags[i].contains(u)).count() as u64;
                    let row = top.iter().find(|r| r.path == *p);
                    prop_assert_eq!(row.map(|r| r.count).unwrap_or(0), n, "{:?}", counting);
                    if let Some(r) = row {
                        let tgi =
                            (n as f64 / total) / (m.flags[i].len() as f64 / USERS as f64) * 100.0;
                        prop_assert!((r.tgi.unwrap() - tgi).abs() < 1e-6);
                    }
                }
                prop_assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
            }
            // Values of enum and set fields are candidates too, enum values counted from their
            // code column or their bitmaps.
            let top = crowd.top_values("city", 2, TopOrder::Tgi).unwrap();
            prop_assert!(top.len() <= 2);
            for column_above in [0, usize::MAX] {
                let top = crowd
                    .top_values_with("", 100, TopOrder::Count, FlagCounting::Auto, column_above)
                    .unwrap();
                let cities: Vec<&TopRow> = top.iter().filter(|r| r.path == "city").collect();
                for c in CITIES {
                    let n = members.iter().filter(|u| m.city.get(u) == Some(&c)).count() as u64;
                    let row = cities.iter().find(|r| r.value.as_deref() == Some(c));
                    prop_assert_eq!(row.map_or(0, |r| r.count), n, "city {}", c);
                }
            }
            for r in &top {
                let v = r.value.as_deref().unwrap();
                let n = members.iter().filter(|u| m.city.get(u) == Some(&v)).count() as u64;
                prop_assert_eq!(r.count, n);
            }
            // aggregates of age
            let ages: Vec<i64> = members
                .iter()
                .filter_map(|u| m.age.get(u).copied())
                .collect();
            let agg = crowd.aggregate("age", &[0.0, 50.0, 100.0]).unwrap();
            prop_assert_eq!(agg.count as usize, ages.len());
            prop_assert_eq!(agg.sum, ages.iter().map(|&a| a as i128).sum::<i128>());
            prop_assert_eq!(agg.min, ages.iter().copied().min());
            prop_assert_eq!(agg.max, ages.iter().copied().max());
            let mut sorted = ages.clone();
            sorted.sort_unstable();
            if !sorted.is_empty() {
                let median_rank =
                    ((0.5 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
                prop_assert_eq!(
                    agg.percentiles.iter().map(|p| p.1).collect::<Vec<_>>(),
                    vec![sorted[0], sorted[median_rank], *sorted.last().unwrap()]
                );
            }
            // distribution with explicit bounds
            let dist = crowd
                .distribution("age", &Buckets::Bounds(vec![18, 30, 50]))
                .unwrap();
            let count_in = |lo: Option<i64>, hi: Option<i64>| {
                ages.iter()
                    .filter(|&&a| lo.is_none_or(|l| a >= l) && hi.is_none_or(|h| a < h))
                    .count() as u64
            };
            for b in &dist {
                prop_assert_eq!(b.count, count_in(b.lower, b.upper));
            }
            prop_assert_eq!(dist.iter().map(|b| b.count).sum::<u64>(), ages.len() as u64);
            if let (Some(lo), Some(hi)) = (ages.iter().min(), ages.iter().max()) {
                let d = crowd
                    .distribution("age", &Buckets::EqualWidth(200))
                    .unwrap();
                prop_assert!(d.len() as i64 <= hi - lo + 1, "no bucket past the maximum");
                prop_assert!(d.iter().all(|b| b.lower.is_some_and(|l| l <= *hi)));
            }
            for spec in [Buckets::EqualWidth(4), Buckets::Quantiles(3)] {
                let d = crowd.distribution("age", &spec).unwrap();
                prop_assert_eq!(d.iter().map(|b| b.count).sum::<u64>(), ages.len() as u64);
                for b in &d {
                    prop_assert_eq!(b.count, count_in(b.lower, b.upper));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn portraits_and_explain_and_errors() {
    let (_dir, db, m) = build();
    let snap = db.table("users").unwrap().snapshot();
    for &u in m.universe.iter().take(50) {
        let p = snap.portrait(KeyRef::U64(key(u))).unwrap();
        let mut want: Vec<(String, Value)> = Vec::new();
        for (i, name) in ["tag/a", "tag/b", "tag/c"].iter().enumerate() {
            if m.flags[i].contains(&u) {
                want.push((name.to_string(), Value::Flag));
            }
        }
        if let Some(c) = m.city.get(&u) {
            want.push(("city".into(), Value::Str(c.to_string())));
        }
        if let Some(s) = m.interest.get(&u) {
            want.push((
                "interest".into(),
                Value::Strs(s.iter().map(|v| v.to_string()).collect()),
            ));
        }
        if let Some(a) = m.age.get(&u) {
            want.push(("age".into(), Value::Int(*a)));
        }
        // In path order, whatever the order the fields were created in.
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(p, want, "portrait of {u}");
        let id = snap.id_of(KeyRef::U64(key(u))).unwrap().unwrap();
        assert_eq!(
            snap.portrait_of_id_as_of(id, "v1").unwrap(),
            want,
            "portrait of {u} as of its only version"
        );
    }
    assert!(matches!(
        snap.portrait(KeyRef::U64(2)),
        Err(crate::Error::KeyNotFound(_))
    ));

    let crowd = snap
        .crowd_text("tag/a AND NOT tag/b AND age >= 30")
        .unwrap();
    let plan = crowd.explain().unwrap();
    assert_eq!(plan.label, "AND NOT");
    assert_eq!(plan.actual, crowd.count().unwrap());
    assert_eq!(plan.children.len(), 3);
    assert!(plan.render().contains("flag tag/a"));
    let estimated = crowd.plan();
    assert_eq!(
        (
            estimated.label.as_str(),
            estimated.actual,
            estimated.children.len()
        ),
        ("AND NOT", 0, 3)
    );

    // Unknown fields are errors with a suggestion; absent values are just empty.
    match snap.crowd_text("tag/aa") {
        Err(crate::Error::FieldNotFound { suggestion, .. }) => {
            assert_eq!(suggestion.as_deref(), Some("tag/a"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        snap.crowd_text("city = 'atlantis'")
            .unwrap()
            .count()
            .unwrap(),
        0
    );
    assert!(matches!(
        snap.crowd_text("city HAS 'x' AND age > 'old'"),
        Err(crate::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        snap.crowd_text("age"),
        Err(crate::Error::KindMismatch { .. })
    ));
    assert!(matches!(
        snap.crowd_text("interest = 'sports'"),
        Err(crate::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        snap.crowd_text("tag/a AND ("),
        Err(crate::Error::Parse(_))
    ));
    let all = snap.crowd_text("NOT ALL").unwrap();
    assert_eq!(all.count().unwrap(), 0);
    assert_eq!(
        snap.crowd_text("ALL").unwrap().count().unwrap(),
        USERS as u64
    );
    assert!(
        snap.crowd_text("tag/a")
            .unwrap()
            .group_count(&["age"], None, 10)
            .is_err()
    );
}

#[test]
fn empty_tables_answer_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("empty", KeyKind::Str).unwrap();
    let snap = t.snapshot();
    for text in ["ALL", "NOT ALL", "KEYS('nobody')"] {
        let crowd = snap.crowd_text(text).unwrap();
        assert_eq!(crowd.count().unwrap(), 0, "{text}");
        assert_eq!(crowd.members(None, 10).unwrap().keys.len(), 0);
        assert!(crowd.sample(3, 1).unwrap().is_empty());
        assert!(!crowd.contains(KeyRef::Str("nobody")).unwrap());
    }
    assert!(matches!(
        snap.crowd_text("vip"),
        Err(crate::Error::FieldNotFound { .. })
    ));
    assert!(matches!(
        snap.portrait(KeyRef::Str("nobody")),
        Err(crate::Error::KeyNotFound(_))
    ));

    // Fields whose every user lacks a value, in a table of users without data.
    let mut load = t.load("v1").unwrap();
    let vip = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
    let age = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
    let _ = (vip, age);
    load.user(KeyRef::Str("a")).unwrap();
    load.commit().unwrap();
    let snap = t.snapshot();
    assert_eq!(snap.crowd_text("vip").unwrap().count().unwrap(), 0);
    assert_eq!(snap.crowd_text("NOT vip").unwrap().count().unwrap(), 1);
    assert_eq!(snap.crowd_text("age >= 0").unwrap().count().unwrap(), 0);
    let agg = snap
        .crowd_text("ALL")
        .unwrap()
        .aggregate("age", &[50.0])
        .unwrap();
    assert_eq!((agg.count, agg.min, agg.avg), (0, None, None));
    assert!(
        snap.crowd_text("ALL")
            .unwrap()
            .distribution("age", &Buckets::Quantiles(4))
            .unwrap()
            .is_empty()
    );
    assert!(snap.portrait(KeyRef::Str("a")).unwrap().is_empty());
}

/// Checks `group_count` by city and by city × interest, reading the city from its code column
/// and from its value bitmaps, against the model.
fn check_groups(snap: &crate::TableSnapshot, m: &Model, e: &Expr) {
    let want = m.eval(e);
    let crowd = snap.crowd(e).unwrap();
    let city_of = |u: &u32| m.city.get(u).copied();
    for column_above in [0, usize::MAX] {
        let rows = crowd
            .group_count_with(&["city"], None, 100, column_above)
            .unwrap();
        let mut expect: BTreeMap<&str, u64> = BTreeMap::new();
        for u in &want.set {
            if let Some(c) = city_of(u) {
                *expect.entry(c).or_insert(0) += 1;
            }
        }
        let got: BTreeMap<&str, u64> = rows
            .iter()
            .map(|r| (r.values[0].as_str(), r.count))
            .collect();
        assert_eq!(got, expect, "{e} by city, columns above {column_above}");
        let top = crowd
            .top_values_with(
                "city",
                100,
                TopOrder::Count,
                FlagCounting::Auto,
                column_above,
            )
            .unwrap();
        let got: BTreeMap<&str, u64> = top
            .iter()
            .map(|r| (r.value.as_deref().unwrap(), r.count))
            .collect();
        assert_eq!(got, expect, "{e}: top cities, columns above {column_above}");
        for r in &rows {
            let base = m.city.values().filter(|c| **c == r.values[0]).count() as u64;
            assert_eq!(r.base_count, base, "{e}: base of {}", r.values[0]);
        }
        for dims in [["city", "interest"], ["interest", "city"]] {
            let rows = crowd
                .group_count_with(&dims, None, 1000, column_above)
                .unwrap();
            let mut expect: BTreeMap<(String, String), u64> = BTreeMap::new();
            for u in &want.set {
                let (Some(c), Some(is)) = (city_of(u), m.interest.get(u)) else {
                    continue;
                };
                for i in is {
                    let key = if dims[0] == "city" {
                        (c.to_string(), i.to_string())
                    } else {
                        (i.to_string(), c.to_string())
                    };
                    *expect.entry(key).or_insert(0) += 1;
                }
            }
            let got: BTreeMap<(String, String), u64> = rows
                .iter()
                .map(|r| ((r.values[0].clone(), r.values[1].clone()), r.count))
                .collect();
            assert_eq!(got, expect, "{e} by {dims:?}, columns above {column_above}");
        }
    }
}

#[test]
fn columns_and_bitmaps_agree_and_see_real_time_writes() {
    let (_dir, db, mut m) = build();
    let t = db.table("users").unwrap();
    let exprs: Vec<Expr> = [
        "ALL",
        "tag/a",
        "NOT tag/b",
        "age >= 30 OR tag/c",
        "city IN ('bj', 'sz')",
    ]
    .iter()
    .map(|s| crate::expr::parse(s).unwrap())
    .collect();
    let snap = t.snapshot();
    for e in &exprs {
        check_groups(&snap, &m, e);
    }
    // Real-time changes to the city of every third data user: cleared, moved, or given a
    // value the stored version does not know.
    let m_before = Model {
        flags: m.flags.clone(),
        city: m.city.clone(),
        interest: m.interest.clone(),
        age: m.age.clone(),
        universe: m.universe.clone(),
    };
    let mut rng = Rng(0x5eed);
    let mut writes = Vec::new();
    for &u in m.universe.clone().iter().step_by(3) {
        let city = match rng.gen_range(0u32..6) {
            0 => None,
            1 => Some("xm"),
            n => Some(CITIES[n as usize % CITIES.len()]),
        };
        writes.push(match city {
            Some(c) => crate::Write::set(key(u), "city", Value::Str(c.into())),
            None => crate::Write::clear(key(u), "city"),
        });
        match city {
            Some(c) => m.city.insert(u, c),
            None => m.city.remove(&u),
        };
    }
    // And to the age of every fifth: cleared or changed.
    for &u in m.universe.clone().iter().step_by(5) {
        let age = (rng.gen_range(0u32..4) > 0).then(|| rng.gen_range(10u32..70) as i64);
        writes.push(match age {
            Some(a) => crate::Write::set(key(u), "age", Value::Int(a)),
            None => crate::Write::clear(key(u), "age"),
        });
        match age {
            Some(a) => m.age.insert(u, a),
            None => m.age.remove(&u),
        };
    }
    let numeric = [
        "tag/a AND age >= 30",
        "tag/b AND age BETWEEN 20 AND 40",
        "(tag/a OR tag/c) AND NOT age < 25",
        "city IN ('bj', 'gz') AND age != 33",
    ];
    let check_numeric = |snap: &crate::TableSnapshot, m: &Model| {
        for text in numeric {
            let e = crate::expr::parse(text).unwrap();
            let crowd = snap.crowd(&e).unwrap();
            let want = m.count(&m.eval(&e));
            assert_eq!(crowd.count().unwrap(), want, "count of {text}");
            assert_eq!(crowd.bitmap().unwrap().cardinality(), want, "{text}");
        }
    };
    check_numeric(&t.snapshot(), &m_before);
    t.write(&writes).unwrap();
    let snap = t.snapshot();
    assert!(snap.field("city").unwrap().has_delta());
    assert!(snap.field("age").unwrap().has_delta());
    for e in &exprs {
        check_groups(&snap, &m, e);
    }
    check_numeric(&snap, &m);
}

/// Enum code columns are one byte a user while every code fits below 255 and four bytes past
/// it; groups, top values and portraits read both alike, and agree with the value bitmaps and
/// with the values loaded, users without a value included.
#[test]
fn narrow_and_wide_code_columns_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let users = 3000u32;
    // `e255` has codes 0..=254 (narrow), `e256` also 255 (wide); every 7th user has neither.
    let value =
        |values: u32, id: u32| (!id.is_multiple_of(7)).then(|| format!("v{}", (id * 31) % values));
    let mut load = t.load("v1").unwrap();
    let fields: Vec<_> = [("e255", 255u32), ("e256", 256)]
        .iter()
        .map(|&(p, n)| {
            (
                p,
                n,
                load.field(FieldSpec::new(p, FieldKind::Enum)).unwrap(),
            )
        })
        .collect();
    let even = load.field(FieldSpec::new("even", FieldKind::Flag)).unwrap();
    for id in 0..users {
        load.user(KeyRef::U64(key(id))).unwrap();
        if id % 2 == 0 {
            load.flag_id(even, id).unwrap();
        }
        for &(_, n, f) in &fields {
            if let Some(v) = value(n, id) {
                load.value_id(f, id, Value::Str(v)).unwrap();
            }
        }
    }
    load.commit().unwrap();
    let snap = t.snapshot();
    for &(path, n, _) in &fields {
        let column = snap
            .field(path)
            .unwrap()
            .stored_codes_in(0)
            .unwrap()
            .unwrap();
        assert_eq!(column.is_narrow(), n <= 255, "{path}");
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for id in (0..users).filter(|id| id.is_multiple_of(2)) {
            if let Some(v) = value(n, id) {
                *want.entry(v).or_insert(0) += 1;
            }
        }
        let crowd = snap.crowd_text("even").unwrap();
        for column_above in [0, usize::MAX] {
            let rows = crowd
                .group_count_with(&[path], None, 1000, column_above)
                .unwrap();
            let got: BTreeMap<String, u64> = rows
                .iter()
                .map(|r| (r.values[0].clone(), r.count))
                .collect();
            assert_eq!(got, want, "{path}: groups, columns above {column_above}");
            let top = crowd
                .top_values_with(
                    path,
                    1000,
                    TopOrder::Count,
                    FlagCounting::Auto,
                    column_above,
                )
                .unwrap();
            let got: BTreeMap<String, u64> = top
                .iter()
                .map(|r| (r.value.clone().unwrap(), r.count))
                .collect();
            assert_eq!(
                got, want,
                "{path}: top values, columns above {column_above}"
            );
        }
        for id in [0, 1, 6, 7, 254, 255, 256, 2999] {
            let portrait = snap.portrait(KeyRef::U64(key(id))).unwrap();
            let got = portrait
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, v)| v.clone());
            assert_eq!(got, value(n, id).map(Value::Str), "{path}: user {id}");
        }
    }
}

/// Top flags of a crowd large enough to be counted as a bit vector (and of a small one, counted
/// by CRoaring), against the flags' members: bitset, array and run containers alike.
#[test]
fn top_flags_of_large_and_small_crowds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let users = 200_000u32;
    /// Whether user `i` has a flag.
    type Has = fn(u32) -> bool;
    let members: [(&str, Has); 6] = [
        ("t/dense", |i| i.is_multiple_of(3)),
        ("t/sparse", |i| i % 97 == 5),
        ("t/runs", |i| (1_000..60_000).contains(&i) || i > 190_000),
        ("t/mixed", |i| {
            if i < 65_536 {
                i.is_multiple_of(2)
            } else {
                i % 1000 == 1
            }
        }),
        ("x/out", |i| i.is_multiple_of(5)),
        ("x/few", |i| i.is_multiple_of(40)),
    ];
    let mut load = t.load("v1").unwrap();
    let fields: Vec<_> = members
        .iter()
        .map(|(p, _)| load.field(FieldSpec::new(*p, FieldKind::Flag)).unwrap())
        .collect();
    for id in 0..users {
        load.user(KeyRef::U64(key(id))).unwrap();
        for (f, (_, has)) in fields.iter().zip(&members) {
            if has(id) {
                load.flag_id(*f, id).unwrap();
            }
        }
    }
    load.commit().unwrap();
    let snap = t.snapshot();
    let (out, few) = (members[4].1, members[5].1);
    let crowds: [(&str, &dyn Fn(u32) -> bool); 2] = [("NOT x/out", &|i| !out(i)), ("x/few", &few)];
    for (text, crowd_has) in crowds {
        let crowd = snap.crowd_text(text).unwrap();
        for counting in [FlagCounting::Bitmaps, FlagCounting::Auto] {
            let rows = crowd
                .top_values_with("t", 10, TopOrder::Count, counting, 0)
                .unwrap();
            let got: BTreeMap<&str, u64> =
                rows.iter().map(|r| (r.path.as_str(), r.count)).collect();
            let want: BTreeMap<&str, u64> = members[..4]
                .iter()
                .map(|(p, has)| {
                    (
                        *p,
                        (0..users).filter(|&i| has(i) && crowd_has(i)).count() as u64,
                    )
                })
                .collect();
            assert_eq!(got, want, "{text}, {counting:?}");
        }
    }
}

/// A comparison of `age` with any operator, or a `BETWEEN`, over and past the ages stored.
fn age_comparison() -> impl Strategy<Value = Expr> + Clone {
    let op = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ];
    prop_oneof![
        (op, 0i64..80).prop_map(|(op, c)| Expr::Compare {
            path: path("age"),
            op,
            value: Literal::Int(c)
        }),
        (0i64..80, 0i64..80).prop_map(|(a, b)| Expr::Between {
            path: path("age"),
            low: Literal::Int(a.min(b)),
            high: Literal::Int(a.max(b)),
        }),
    ]
}

/// An `AND` of stored operands (flags, values, unions of them), negated stored operands and
/// age comparisons (or none): the shapes counted block by block.
fn blockwise_and() -> impl Strategy<Value = Expr> {
    let stored = prop_oneof![
        prop_oneof![Just("tag/a"), Just("tag/b"), Just("tag/c")].prop_map(|p| Expr::Field(path(p))),
        proptest::collection::vec(
            prop_oneof![Just("bj"), Just("sh"), Just("gz"), Just("sz")],
            1..4
        )
        .prop_map(|cs| Expr::In {
            path: path("city"),
            values: cs.into_iter().map(s).collect(),
            negated: false,
        }),
        proptest::collection::vec(
            prop_oneof![Just("sports"), Just("music"), Just("games")],
            1..3
        )
        .prop_map(|vs| Expr::Has {
            path: path("interest"),
            mode: HasMode::Any,
            values: vs.into_iter().map(s).collect(),
        }),
    ];
    let stored = prop_oneof![
        stored.clone(),
        proptest::collection::vec(stored, 2..3).prop_map(Expr::Or),
    ];
    (
        proptest::collection::vec(stored.clone(), 1..4),
        proptest::collection::vec(stored, 0..3),
        proptest::collection::vec(age_comparison(), 0..3),
    )
        .prop_map(|(keep, drop, compare)| {
            let mut parts = keep;
            parts.extend(drop.into_iter().map(|e| Expr::Not(Box::new(e))));
            parts.extend(compare);
            match parts.len() {
                1 => parts.remove(0),
                _ => Expr::And(parts),
            }
        })
}

/// Block-by-block counts, with comparisons read from the slices, from the column, or either
/// by the usual threshold, against the model.
#[test]
fn blockwise_counts_match_the_naive_evaluator() {
    let (_dir, db, m) = build();
    let snap = db.table("users").unwrap().snapshot();
    let mut runner = TestRunner::new(crate::testutil::proptest_config(200));
    let counted = std::cell::Cell::new(0);
    runner
        .run(&blockwise_and(), |e| {
            let want = m.count(&m.eval(&e));
            let crowd = snap.crowd(&e).unwrap();
            prop_assert_eq!(crowd.count().unwrap(), want, "count of {}", e);
            let super::plan::Node::And { pos, neg } = &crowd.root else {
                return Ok(());
            };
            let compares = pos.iter().any(|n| {
                matches!(
                    n,
                    super::plan::Node::Compare(..) | super::plan::Node::Between(..)
                )
            });
            for per_slice in [0, 1, super::blockwise::COLUMN_USERS_PER_SLICE, u64::MAX] {
                let mut total = Some(0);
                for shard in 0..snap.shards() {
                    let s = super::eval::Shard { snap: &snap, shard };
                    let n = super::blockwise::count_blocks(pos, neg, &s, per_slice).unwrap();
                    // The comparison-only entry point counts the same, or leaves it.
                    let gated = super::blockwise::count_and(pos, neg, &s, per_slice).unwrap();
                    prop_assert_eq!(gated, if compares { n } else { None });
                    total = total.zip(n).map(|(a, b)| a + b);
                    // Selecting every member, and every third one, gives the shard's members.
                    let members: Vec<u32> = crowd.shard_bitmap(shard).unwrap().iter().collect();
                    for step in [1, 3] {
                        let ranks: Vec<u64> = (0..members.len() as u64 + 2).step_by(step).collect();
                        let mut got = vec![7];
                        let read = super::blockwise::select_blocks(pos, neg, &s, &ranks, &mut got)
                            .unwrap();
                        prop_assert_eq!(read, n.is_some());
                        let want: Vec<u32> = std::iter::once(7)
                            .chain(if read {
                                members.iter().copied().step_by(step).collect()
                            } else {
                                Vec::new()
                            })
                            .collect();
                        prop_assert_eq!(got, want, "members of {} in shard {}", e, shard);
                    }
                }
                if let Some(total) = total {
                    counted.set(counted.get() + 1);
                    prop_assert_eq!(total, want, "{} reading columns below {}", e, per_slice);
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(
        counted.get() > 0,
        "some expressions are counted block by block"
    );
}

/// `AND`s of dense flags (bitset containers), with and without negated flags dense or sparse,
/// counted against per-user membership: the shapes the count takes block by block rather than
/// through materialized intersections.
#[test]
fn dense_ands_count_their_members() {
    const N: u32 = 200_000;
    let mut rng = Rng(0x5eed_0a4d);
    // Shares of users: four flags dense enough for bitsets, one sparse, one empty.
    let shares = [0.5, 0.3, 0.12, 0.08, 0.01, 0.0];
    let members: Vec<Vec<bool>> = shares
        .iter()
        .map(|&p| (0..N).map(|_| rng.gen_bool(p)).collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let mut load = t.load("v1").unwrap();
    for id in 0..N {
        load.user(KeyRef::U64(u64::from(id))).unwrap();
    }
    for (i, m) in members.iter().enumerate() {
        let f = load
            .field(FieldSpec::new(format!("f/t{i}"), FieldKind::Flag))
            .unwrap();
        let ids: Vec<u32> = (0..N).filter(|&u| m[u as usize]).collect();
        load.flag_bitmap(f, &croaring::Bitmap::of(&ids)).unwrap();
    }
    load.commit().unwrap();
    let snap = t.snapshot();
    // (positive flags, negated flags)
    let shapes: [(&[usize], &[usize]); 8] = [
        (&[0, 1, 2], &[]),
        (&[0, 1], &[4]),
        (&[0, 1], &[3]),
        (&[0, 1, 3], &[2]),
        (&[1, 2], &[0, 4]),
        (&[0, 1, 2, 3], &[]),
        (&[0, 1], &[5]),
        (&[0, 1, 4], &[2]),
    ];
    for (pos, neg) in shapes {
        let text: Vec<String> = pos
            .iter()
            .map(|i| format!("f/t{i}"))
            .chain(neg.iter().map(|i| format!("NOT f/t{i}")))
            .collect();
        let text = text.join(" AND ");
        let want = (0..N as usize)
            .filter(|&u| pos.iter().all(|&i| members[i][u]) && !neg.iter().any(|&i| members[i][u]))
            .count() as u64;
        assert_eq!(
            snap.crowd_text(&text).unwrap().count().unwrap(),
            want,
            "{text}"
        );
    }
}

/// Distributions over crowds that are one stored bitmap (read in place by the fused kernels when
/// dense enough), over other crowds, over a crowd as of an older version, and after real-time
/// changes to the crowd's field and to the analysed one (read through bitmaps then), over two
/// shards: the model's counts every time.
#[test]
fn distributions_of_stored_crowds_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let users = SHARD + 150_000;
    let dense: BTreeSet<u32> = (0..users).filter(|i| i.is_multiple_of(3)).collect();
    let sparse: BTreeSet<u32> = (0..users).filter(|i| i % 97 == 5).collect();
    let runs: BTreeSet<u32> = (0..users)
        .filter(|i| (1_000..60_000).contains(i) || (SHARD + 10_000..SHARD + 90_000).contains(i))
        .collect();
    let city = |i: u32| if i % 4 == 1 { "c1" } else { "c0" };
    let mut ages: Vec<Option<i64>> = (0..users)
        .map(|i| (!i.is_multiple_of(11)).then(|| i64::from(i.wrapping_mul(7919) % 70) + 10))
        .collect();
    let mut load = t.load("v1").unwrap();
    let flag =
        |load: &mut crate::Load, p: &str| load.field(FieldSpec::new(p, FieldKind::Flag)).unwrap();
    let (f_dense, f_sparse, f_runs) = (
        flag(&mut load, "t/dense"),
        flag(&mut load, "t/sparse"),
        flag(&mut load, "t/runs"),
    );
    let f_city = load.field(FieldSpec::new("city", FieldKind::Enum)).unwrap();
    let f_age = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
    for id in 0..users {
        load.user(KeyRef::U64(key(id))).unwrap();
        for (f, set) in [(f_dense, &dense), (f_sparse, &sparse), (f_runs, &runs)] {
            if set.contains(&id) {
                load.flag_id(f, id).unwrap();
            }
        }
        load.value_id(f_city, id, Value::Str(city(id).into()))
            .unwrap();
        if let Some(a) = ages[id as usize] {
            load.value_id(f_age, id, Value::Int(a)).unwrap();
        }
    }
    load.commit().unwrap();
    let bounds = vec![20, 30, 45, 60, 79];
    let check =
        |crowd: crate::Crowd<'_>, what: &str, has: &dyn Fn(u32) -> bool, ages: &[Option<i64>]| {
            let rows = crowd
                .distribution("age", &Buckets::Bounds(bounds.clone()))
                .unwrap();
            let of_crowd: Vec<i64> = (0..users)
                .filter(|&i| has(i))
                .filter_map(|i| ages[i as usize])
                .collect();
            assert_eq!(
                rows.iter().map(|b| b.count).sum::<u64>(),
                of_crowd.len() as u64,
                "{what}"
            );
            for b in &rows {
                let want = of_crowd
                    .iter()
                    .filter(|&&a| b.lower.is_none_or(|l| a >= l) && b.upper.is_none_or(|h| a < h))
                    .count() as u64;
                assert_eq!(b.count, want, "{what}: {b:?}");
            }
        };
    let snap = t.snapshot();
    let crowd = |text: &str| snap.crowd_text(text).unwrap();
    check(crowd("t/dense"), "t/dense", &|i| dense.contains(&i), &ages);
    check(
        crowd("t/sparse"),
        "t/sparse",
        &|i| sparse.contains(&i),
        &ages,
    );
    check(crowd("t/runs"), "t/runs", &|i| runs.contains(&i), &ages);
    check(crowd("city = 'c0'"), "c0", &|i| city(i) == "c0", &ages);
    check(crowd("city = 'c9'"), "c9", &|_| false, &ages);
    check(
        crowd("t/dense AND NOT t/runs"),
        "an AND",
        &|i| dense.contains(&i) && !runs.contains(&i),
        &ages,
    );

    // A second version of the dense flag: crowds as of the first still read the first.
    let fives: BTreeSet<u32> = (0..users).filter(|i| i.is_multiple_of(5)).collect();
    let mut load = t.load("v2").unwrap();
    let f = flag(&mut load, "t/dense");
    for &id in &fives {
        load.flag_id(f, id).unwrap();
    }
    load.commit().unwrap();
    let snap = t.snapshot();
    let expr = crate::expr::parse("t/dense").unwrap();
    let old = snap.crowd_as_of(&expr, Some("v1")).unwrap();
    check(old, "t/dense as of v1", &|i| dense.contains(&i), &ages);
    check(
        snap.crowd(&expr).unwrap(),
        "t/dense v2",
        &|i| fives.contains(&i),
        &ages,
    );
    let mut dense = fives;

    // Real-time changes to the dense flag (added to and cleared from some users, in both
    // shards), then to the analysed field.
    let mut writes = Vec::new();
    for i in (0..users).step_by(1_000) {
        if dense.remove(&i) {
            writes.push(crate::Write::clear(key(i), "t/dense"));
        } else {
            dense.insert(i);
            writes.push(crate::Write::set(key(i), "t/dense", Value::Flag));
        }
    }
    t.write(&writes).unwrap();
    let snap = t.snapshot();
    assert!(snap.field("t/dense").unwrap().has_delta());
    check(
        snap.crowd(&expr).unwrap(),
        "t/dense changed",
        &|i| dense.contains(&i),
        &ages,
    );
    check(
        snap.crowd_text("t/runs").unwrap(),
        "t/runs",
        &|i| runs.contains(&i),
        &ages,
    );
    let mut writes = Vec::new();
    for i in (7..users).step_by(777) {
        let age = (i % 3 != 0).then_some(i64::from(i % 50) + 15);
        ages[i as usize] = age;
        writes.push(match age {
            Some(a) => crate::Write::set(key(i), "age", Value::Int(a)),
            None => crate::Write::clear(key(i), "age"),
        });
    }
    t.write(&writes).unwrap();
    let snap = t.snapshot();
    assert!(snap.field("age").unwrap().has_delta());
    check(
        snap.crowd_text("t/runs").unwrap(),
        "t/runs, ages changed",
        &|i| runs.contains(&i),
        &ages,
    );
    check(
        snap.crowd(&expr).unwrap(),
        "t/dense, ages changed",
        &|i| dense.contains(&i),
        &ages,
    );
}
