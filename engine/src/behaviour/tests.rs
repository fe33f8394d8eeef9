//! Behaviour predicates and analyses against naive per-user event lists.
//!
//! The table spans three shards; a few hundred users (many on shard boundaries) did events on
//! a month of days with gaps (days nobody did an event are not stored at all), the rest did
//! nothing. Every query is checked against a model that keeps, per event, each user's
//! `day -> count` map and answers by scanning it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use super::funnel::FunnelQuery;
use super::retention::RetentionQuery;
use super::{DayRange, Period, day_of_date, format_day};
use crate::expr::{CmpOp, Date, DidCount, Expr, Measure, Occurrence, Path, When, Window};
use crate::{Database, FieldKind, FieldSpec, KeyKind, KeyRef, SHARD_BITS};

const SHARD: u32 = 1 << SHARD_BITS;
const USERS: u32 = 2 * SHARD + 300;
const EVENTS: [&str; 3] = ["open", "view", "buy"];
const SPAN: i32 = 40;

fn d0() -> i32 {
    day_of_date(2026, 10, 20)
}

#[derive(Debug, Default)]
struct Model {
    /// Per event: user -> day -> count.
    events: [BTreeMap<u32, BTreeMap<i32, u64>>; 3],
    /// Per event: the days stored (someone did it).
    days: [BTreeSet<i32>; 3],
    vip: BTreeSet<u32>,
    /// An enum dimension for splits: `tier` of some users.
    tier: BTreeMap<u32, &'static str>,
    /// Users carrying any data.
    universe: BTreeSet<u32>,
    /// The newest stored day of any event.
    reference: i32,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl Model {
    fn generate(rng: &mut Rng) -> Self {
        let mut m = Model::default();
        // Some days have nobody doing an event at all.
        let dead: BTreeSet<i32> = (0..SPAN)
            .filter(|_| rng.below(6) == 0)
            .map(|d| d0() + d)
            .collect();
        for _ in 0..300 {
            let id = match rng.below(4) {
                0 => rng.below(50) as u32,
                1 => SHARD - 25 + rng.below(50) as u32,
                2 => 2 * SHARD - 25 + rng.below(50) as u32,
                _ => USERS - 60 + rng.below(60) as u32,
            };
            m.universe.insert(id);
            if rng.below(3) == 0 {
                m.vip.insert(id);
            }
            if rng.below(4) != 0 {
                m.tier
                    .insert(id, ["gold", "silver", "bronze"][rng.below(3) as usize]);
            }
            let activity = 1 + rng.below(4);
            for day in 0..SPAN {
                let day = d0() + day;
                if dead.contains(&day) || rng.below(8) >= activity {
                    continue;
                }
                // Nested events, like the real thing: views come with opens, buys with views.
                for (e, p) in [(0usize, 1u64), (1, 2), (2, 4)] {
                    if e > 0
                        && !m.events[e - 1]
                            .get(&id)
                            .is_some_and(|d| d.contains_key(&day))
                    {
                        break;
                    }
                    if rng.below(p) == 0 {
                        let count = 1 + rng.below(6).saturating_sub(2);
                        m.events[e].entry(id).or_default().insert(day, count);
                        m.days[e].insert(day);
                    }
                }
            }
        }
        m.reference = m
            .days
            .iter()
            .filter_map(|d| d.last().copied())
            .max()
            .unwrap();
        m
    }

    fn event(&self, name: &str) -> usize {
        EVENTS.iter().position(|e| *e == name).unwrap()
    }

    fn window(&self, w: &Window) -> DayRange {
        let day = |d: &Date| day_of_date(d.year(), d.month(), d.day());
        match w {
            Window::Last { days, ending } => {
                let end = ending.as_ref().map(day).unwrap_or(self.reference);
                DayRange::new(end - *days as i32 + 1, end)
            }
            Window::Range { from, to } => DayRange::new(day(from), day(to)),
            Window::Ever => DayRange::new(i32::MIN, i32::MAX),
        }
    }

    fn total(&self, e: usize, u: u32, r: DayRange, measure: Measure) -> u64 {
        self.events[e].get(&u).map_or(0, |days| {
            days.iter()
                .filter(|(d, _)| r.contains(**d))
                .map(|(_, c)| if measure == Measure::Times { *c } else { 1 })
                .sum()
        })
    }

    /// (members among the universe, whether everyone else is a member)
    fn eval(&self, e: &Expr) -> (BTreeSet<u32>, bool) {
        let pred = |f: &dyn Fn(u32) -> bool| -> BTreeSet<u32> {
            self.universe.iter().copied().filter(|&u| f(u)).collect()
        };
        match e {
            Expr::Field(_) => (self.vip.clone(), false),
            Expr::Did {
                event,
                window,
                count,
            } => {
                let ev = self.event(event.as_str());
                let r = self.window(window);
                match count {
                    None => (pred(&|u| self.total(ev, u, r, Measure::Days) > 0), false),
                    Some(c) => (
                        pred(&|u| {
                            super::predicate::holds(c.op, self.total(ev, u, r, c.measure), c.n)
                        }),
                        super::predicate::holds(c.op, 0, c.n),
                    ),
                }
            }
            Expr::Occurred { which, event, when } => {
                let ev = self.event(event.as_str());
                let test = |day: i32| -> bool {
                    match when {
                        When::Date { op, date } => op.holds(
                            day as i64,
                            day_of_date(date.year(), date.month(), date.day()) as i64,
                        ),
                        When::DaysAgo { op, days } => {
                            op.holds((self.reference - day) as i64, *days as i64)
                        }
                        When::Within(n) => ((self.reference - day) as i64) < *n as i64,
                    }
                };
                (
                    pred(&|u| {
                        let days = self.events[ev].get(&u);
                        let day = match which {
                            Occurrence::First => days.and_then(|d| d.keys().next().copied()),
                            Occurrence::Last => days.and_then(|d| d.keys().next_back().copied()),
                        };
                        day.is_some_and(test)
                    }),
                    false,
                )
            }
            Expr::Not(x) => {
                let (s, rest) = self.eval(x);
                (self.universe.difference(&s).copied().collect(), !rest)
            }
            Expr::And(xs) => xs
                .iter()
                .map(|x| self.eval(x))
                .reduce(|a, b| (a.0.intersection(&b.0).copied().collect(), a.1 && b.1))
                .unwrap(),
            Expr::Or(xs) => xs
                .iter()
                .map(|x| self.eval(x))
                .reduce(|a, b| (a.0.union(&b.0).copied().collect(), a.1 || b.1))
                .unwrap(),
            other => unreachable!("generator never builds {other:?}"),
        }
    }

    fn crowd(&self, vip_only: bool) -> Vec<u32> {
        if vip_only {
            self.vip.iter().copied().collect()
        } else {
            (0..USERS).collect()
        }
    }

    /// Whether `u` did `e` on a day of `[start, end)` that is at most the reference day.
    fn did_between(&self, e: usize, u: u32, start: i32, end: i32) -> bool {
        self.events[e]
            .get(&u)
            .is_some_and(|d| d.range(start..end).any(|(&day, _)| day <= self.reference))
    }
}

fn key(id: u32) -> u64 {
    id as u64 * 7 + 3
}

fn fixture() -> &'static (tempfile::TempDir, Database, Model) {
    static FIXTURE: OnceLock<(tempfile::TempDir, Database, Model)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let m = Model::generate(&mut Rng(0x0bad_5eed));
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let t = db.create_table("users", KeyKind::U64).unwrap();
        // Events arrive in two loads: the second replaces the days it holds and keeps the rest.
        let split = d0() + SPAN / 2;
        for (label, first_half) in [("v1", true), ("v2", false)] {
            let mut load = t.load(label).unwrap();
            if first_half {
                for id in 0..USERS {
                    load.user(KeyRef::U64(key(id))).unwrap();
                }
                let vip = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
                for &u in &m.vip {
                    load.flag_id(vip, u).unwrap();
                }
                let tier = load.field(FieldSpec::new("tier", FieldKind::Enum)).unwrap();
                for (&u, &t) in &m.tier {
                    load.value_id(tier, u, crate::Value::Str(t.into())).unwrap();
                }
            }
            for (e, name) in EVENTS.iter().enumerate() {
                let f = load.field(FieldSpec::new(*name, FieldKind::Event)).unwrap();
                for (&u, days) in &m.events[e] {
                    for (&day, &count) in days {
                        if (day < split) == first_half {
                            // Split counts in two to check that they add up.
                            let half = count / 2;
                            if half > 0 {
                                load.event_id(f, u, day, half as u32).unwrap();
                            }
                            load.event_id(f, u, day, (count - half) as u32).unwrap();
                        }
                    }
                }
                if !first_half {
                    // A day loaded again replaces the earlier load of it.
                    load.event_id(f, 0, split - 1, 1).unwrap();
                }
            }
            load.commit().unwrap();
        }
        // Undo the overwrite of day `split - 1` above in the model's terms: that day now holds
        // only user 0 once for every event.
        let mut m = m;
        for e in 0..3 {
            for days in m.events[e].values_mut() {
                days.remove(&(split - 1));
            }
            m.events[e].retain(|_, d| !d.is_empty());
            m.events[e].entry(0).or_default().insert(split - 1, 1);
            m.days[e] = m.events[e]
                .values()
                .flat_map(|d| d.keys().copied())
                .collect();
        }
        m.universe.insert(0);
        (dir, db, m)
    })
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

fn date_near() -> impl Strategy<Value = Date> {
    (-5i32..SPAN + 5).prop_map(|off| {
        let (y, m, d) = super::date_of_day(d0() + off);
        Date::new(y, m, d).unwrap()
    })
}

fn leaf() -> impl Strategy<Value = Expr> {
    let event = prop::sample::select(EVENTS.to_vec()).prop_map(|e| Path::new(e).unwrap());
    let window = prop_oneof![
        (1u32..45, proptest::option::of(date_near()))
            .prop_map(|(days, ending)| Window::Last { days, ending }),
        (date_near(), date_near()).prop_map(|(a, b)| Window::Range {
            from: a.min(b),
            to: a.max(b)
        }),
        Just(Window::Ever),
    ];
    let count = proptest::option::of((op_strategy(), 0u64..12, any::<bool>()).prop_map(
        |(op, n, days)| DidCount {
            op,
            n,
            measure: if days { Measure::Days } else { Measure::Times },
        },
    ));
    let when = prop_oneof![
        (op_strategy(), 0u32..45).prop_map(|(op, days)| When::DaysAgo { op, days }),
        (op_strategy(), date_near()).prop_map(|(op, date)| When::Date { op, date }),
        (1u32..45).prop_map(When::Within),
    ];
    prop_oneof![
        (event.clone(), window, count).prop_map(|(event, window, count)| Expr::Did {
            event,
            window,
            count
        }),
        (event, any::<bool>(), when).prop_map(|(event, first, when)| Expr::Occurred {
            which: if first {
                Occurrence::First
            } else {
                Occurrence::Last
            },
            event,
            when
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let vip = Just(Expr::Field(Path::new("vip").unwrap()));
    prop_oneof![
        3 => leaf(),
        1 => leaf().prop_map(|e| Expr::Not(Box::new(e))),
        2 => (leaf(), leaf()).prop_map(|(a, b)| Expr::And(vec![a, b])),
        2 => (leaf(), vip.clone()).prop_map(|(a, v)| Expr::And(vec![v, a])),
        1 => (leaf(), vip).prop_map(|(a, v)| Expr::And(vec![v, Expr::Not(Box::new(a))])),
        1 => (leaf(), leaf()).prop_map(|(a, b)| Expr::Or(vec![a, b])),
    ]
}

#[test]
fn behaviour_predicates_match_the_model() {
    let (_dir, db, m) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    assert_eq!(snap.reference_day(), Some(m.reference));
    // The fixture is not degenerate: every event has many users and days, with gaps.
    for e in 0..3 {
        assert!(m.events[e].len() > 60, "{} users", m.events[e].len());
        assert!(m.days[e].len() > 20 && m.days[e].len() < SPAN as usize);
    }
    let mut runner = TestRunner::new(crate::testutil::proptest_config(160));
    runner
        .run(&expr(), |e| {
            let (set, rest) = m.eval(&e);
            let crowd = snap.crowd(&e).unwrap();
            let outsiders = (USERS as usize - m.universe.len()) as u64;
            let expected = set.len() as u64 + if rest { outsiders } else { 0 };
            prop_assert_eq!(crowd.count().unwrap(), expected, "count of {}", e);
            let bitmap = crowd.bitmap().unwrap();
            let got: BTreeSet<u32> = m
                .universe
                .iter()
                .copied()
                .filter(|&u| bitmap.contains(u))
                .collect();
            prop_assert_eq!(&got, &set, "members of {}", e);
            prop_assert_eq!(bitmap.contains(SHARD + 100), rest, "an outsider in {}", e);
            // Text round trip, and the per-user path.
            let again = snap.crowd_text(&e.to_string()).unwrap().count().unwrap();
            prop_assert_eq!(again, expected);
            for &u in m.universe.iter().step_by(7) {
                prop_assert_eq!(
                    crowd.contains(KeyRef::U64(key(u))).unwrap(),
                    set.contains(&u),
                    "contains({}) for {}",
                    u,
                    e
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn retention_matches_the_model() {
    let (_dir, db, m) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    let strategy = (
        0usize..3,
        0usize..3,
        -3i32..SPAN,
        0i32..20,
        prop::sample::select(vec![Period::Day, Period::Week, Period::Month]),
        0u32..10,
        any::<bool>(),
    );
    let mut runner = TestRunner::new(crate::testutil::proptest_config(60));
    runner
        .run(
            &strategy,
            |(ce, re, first, len, period, periods, vip_only)| {
                let q = RetentionQuery {
                    cohort_event: EVENTS[ce].into(),
                    return_event: EVENTS[re].into(),
                    cohorts: DayRange::new(d0() + first, d0() + first + len),
                    period,
                    periods,
                    split: None,
                    reference: None,
                };
                let crowd_expr = if vip_only {
                    Expr::Field(Path::new("vip").unwrap())
                } else {
                    Expr::All
                };
                let crowd = snap.crowd(&crowd_expr).unwrap();
                let rows = crowd.retention(&q).unwrap();
                let members = m.crowd(vip_only);
                let mut expected = Vec::new();
                let mut p = period.start_of(q.cohorts.first);
                while p <= q.cohorts.last && p <= m.reference {
                    let cohort: Vec<u32> = members
                        .iter()
                        .copied()
                        .filter(|&u| m.did_between(ce, u, p, period.next(p)))
                        .collect();
                    let mut retained = Vec::new();
                    for k in 0..=periods {
                        let s = period.advance(p, k);
                        if s > m.reference {
                            break;
                        }
                        retained.push(
                            cohort
                                .iter()
                                .filter(|&&u| m.did_between(re, u, s, period.next(s)))
                                .count() as u64,
                        );
                    }
                    expected.push((p, cohort.len() as u64, retained));
                    p = period.next(p);
                }
                let got: Vec<(i32, u64, Vec<u64>)> = rows
                    .into_iter()
                    .map(|r| (r.cohort, r.size, r.retained))
                    .collect();
                prop_assert_eq!(got, expected);
                Ok(())
            },
        )
        .unwrap();
}

/// The naive funnel: per user and start day, the greedy earliest chain.
fn model_funnel(
    m: &Model,
    steps: &[usize],
    window: u32,
    starts: DayRange,
    crowd: &[u32],
) -> Vec<u64> {
    let mut reached = vec![0u64; steps.len()];
    for &u in crowd {
        let Some(first) = m.events[steps[0]].get(&u) else {
            continue;
        };
        let mut best = 0;
        for &s in first.keys().filter(|d| starts.contains(**d)) {
            let mut level = 1;
            let mut cur = s;
            for &e in &steps[1..] {
                let next = m.events[e]
                    .get(&u)
                    .and_then(|d| d.range(cur..=s + window as i32).next().map(|(&d, _)| d));
                match next {
                    Some(d) => {
                        cur = d;
                        level += 1;
                    }
                    None => break,
                }
            }
            best = best.max(level);
        }
        for r in reached.iter_mut().take(best) {
            *r += 1;
        }
    }
    reached
}

#[test]
fn funnels_match_the_model() {
    let (_dir, db, m) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    // 2 to 10 steps: the kernels specialized for 2 to 8 steps and the general one.
    let strategy = (
        prop::collection::vec(0usize..3, 2..11),
        0u32..10,
        -2i32..SPAN,
        0i32..SPAN,
        any::<bool>(),
    );
    let mut runner = TestRunner::new(crate::testutil::proptest_config(80));
    runner
        .run(&strategy, |(steps, window, first, len, vip_only)| {
            let starts = DayRange::new(d0() + first, d0() + first + len);
            let q = FunnelQuery {
                steps: steps.iter().map(|&e| EVENTS[e].to_owned()).collect(),
                window,
                starts,
                split: None,
            };
            let crowd_expr = if vip_only {
                Expr::Field(Path::new("vip").unwrap())
            } else {
                Expr::All
            };
            let rows = snap.crowd(&crowd_expr).unwrap().funnel(&q).unwrap();
            prop_assert_eq!(rows.len(), 1);
            let expected = model_funnel(m, &steps, window, starts, &m.crowd(vip_only));
            prop_assert_eq!(&rows[0].reached, &expected, "{:?}", q);
            for i in 0..steps.len() - 1 {
                prop_assert_eq!(rows[0].drop_off(i), expected[i] - expected[i + 1]);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn splits_break_retention_and_funnels_down_by_value() {
    let (_dir, db, m) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    let everyone = snap.crowd(&Expr::All).unwrap();
    let tiers = ["bronze", "gold", "silver"]; // the dictionary's (sorted) order
    let members = |tier: &str| -> Vec<u32> {
        m.tier
            .iter()
            .filter(|e| *e.1 == tier)
            .map(|e| *e.0)
            .collect()
    };
    // Funnel.
    let starts = DayRange::new(d0(), d0() + SPAN);
    let q = FunnelQuery {
        steps: vec!["open".into(), "view".into(), "buy".into()],
        window: 5,
        starts,
        split: Some("tier".into()),
    };
    let rows = everyone.funnel(&q).unwrap();
    assert_eq!(rows.len(), 3);
    for (row, tier) in rows.iter().zip(tiers) {
        assert_eq!(row.group.as_deref(), Some(tier));
        assert_eq!(
            row.reached,
            model_funnel(m, &[0, 1, 2], 5, starts, &members(tier))
        );
        assert!(row.reached[0] > 0);
    }
    // Retention.
    let q = RetentionQuery {
        cohort_event: "open".into(),
        return_event: "view".into(),
        cohorts: DayRange::new(d0() + 3, d0() + 12),
        period: Period::Week,
        periods: 3,
        split: Some("tier".into()),
        reference: None,
    };
    let rows = everyone.retention(&q).unwrap();
    assert_eq!(rows.len() % 3, 0);
    for row in &rows {
        let users = members(row.group.as_deref().unwrap());
        let next = Period::Week.next(row.cohort);
        let cohort: Vec<u32> = users
            .into_iter()
            .filter(|&u| m.did_between(0, u, row.cohort, next))
            .collect();
        assert_eq!(row.size, cohort.len() as u64);
        for (k, &got) in row.retained.iter().enumerate() {
            let s = Period::Week.advance(row.cohort, k as u32);
            let want = cohort
                .iter()
                .filter(|&&u| m.did_between(1, u, s, Period::Week.next(s)))
                .count() as u64;
            assert_eq!(got, want, "{row:?} offset {k}");
        }
    }
    // A split on a field that is not a dimension is refused.
    let bad = RetentionQuery {
        split: Some("vip".into()),
        ..q
    };
    assert!(matches!(
        everyone.retention(&bad),
        Err(crate::Error::KindMismatch { .. })
    ));
}

#[test]
fn frequency_and_activity_match_the_model() {
    let (_dir, db, m) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    let strategy = (
        0usize..3,
        -3i32..SPAN,
        0i32..SPAN,
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![Period::Day, Period::Week, Period::Month]),
    );
    let mut runner = TestRunner::new(crate::testutil::proptest_config(60));
    runner
        .run(&strategy, |(e, first, len, times, vip_only, period)| {
            let range = DayRange::new(d0() + first, d0() + first + len);
            let measure = if times { Measure::Times } else { Measure::Days };
            let crowd_expr = if vip_only {
                Expr::Field(Path::new("vip").unwrap())
            } else {
                Expr::All
            };
            let crowd = snap.crowd(&crowd_expr).unwrap();
            let f = crowd.frequency(EVENTS[e], range, measure).unwrap();
            let members = m.crowd(vip_only);
            let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
            for &u in &members {
                let n = m.total(e, u, range, measure);
                if n > 0 {
                    *hist.entry(n).or_default() += 1;
                }
            }
            prop_assert_eq!(f.crowd, members.len() as u64);
            prop_assert_eq!(f.histogram, hist.into_iter().collect::<Vec<_>>());

            let rows = crowd.active(EVENTS[e], range, period).unwrap();
            let mut p = period.start_of(range.first);
            let mut expected = Vec::new();
            while p <= range.last {
                let n = members
                    .iter()
                    .filter(|&&u| {
                        m.events[e]
                            .get(&u)
                            .is_some_and(|d| d.range(p..period.next(p)).next().is_some())
                    })
                    .count() as u64;
                expected.push((p, n));
                p = period.next(p);
            }
            let got: Vec<(i32, u64)> = rows.iter().map(|r| (r.period, r.users)).collect();
            prop_assert_eq!(got, expected);
            Ok(())
        })
        .unwrap();
}

#[test]
fn days_found_together_are_the_days_found_one_by_one() {
    let (_dir, db, _) = fixture();
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    // Any order, repeats, days before and after the stored ones, negative days.
    let strategy = (
        0usize..3,
        0u32..3,
        prop::collection::vec(-5i32..SPAN + 5, 0..40),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(crate::testutil::proptest_config(100));
    runner
        .run(&strategy, |(e, shard, offsets, absolute)| {
            let f = snap.field(EVENTS[e]).unwrap();
            let days: Vec<i32> = offsets
                .iter()
                .map(|&o| if absolute { o } else { d0() + o })
                .collect();
            let together = f.event_days_in(shard, &days).unwrap();
            prop_assert_eq!(together.len(), days.len());
            for (&day, got) in days.iter().zip(together) {
                let one = f.event_day_in(shard, day).unwrap();
                prop_assert_eq!(
                    got.map(|b| b.bitmap.to_vec()),
                    one.map(|b| b.to_vec()),
                    "day {}",
                    day
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn event_loads_replace_days_keep_the_others_and_honour_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("t", KeyKind::Str).unwrap();
    let day = day_of_date(2026, 11, 1);
    let mut load = t.load("a").unwrap();
    let f = load
        .field(FieldSpec::new("login", FieldKind::Event))
        .unwrap();
    for d in 0..5 {
        load.event(f, "u1", day + d, 2).unwrap();
    }
    load.event(f, "u2", day, 1).unwrap();
    load.commit().unwrap();
    let snap = t.snapshot();
    let login = snap.field("login").unwrap();
    assert_eq!(
        login.event_days(),
        (0..5).map(|d| day + d).collect::<Vec<_>>()
    );
    assert_eq!(login.version().users, 2);
    assert_eq!(login.values()[0], format_day(day));

    // Reload day 0 with only u2: u1's day 0 goes, days 1-4 stay.
    t.set_time_options(8 * 60, 3).unwrap();
    let mut load = t.load("b").unwrap();
    let f = load
        .field(FieldSpec::new("login", FieldKind::Event))
        .unwrap();
    load.event(f, "u2", day, 1).unwrap();
    // 2026-11-05 23:30 UTC is already the 6th at UTC+8.
    let ms = day_of_date(2026, 11, 5) as i64 * super::DAY_MS + 23 * 3_600_000 + 1_800_000;
    load.event_at(f, "u3", ms).unwrap();
    load.commit().unwrap();
    let snap = t.snapshot();
    let login = snap.field("login").unwrap();
    // Horizon of 3 days back from the newest (the 6th): the 4th, 5th, 6th.
    assert_eq!(login.event_days(), vec![day + 3, day + 4, day + 5]);
    let did = |text: &str| snap.crowd_text(text).unwrap().count().unwrap();
    assert_eq!(did("did(login, ever)"), 2);
    assert_eq!(did("did(login, last 1 days)"), 1);
    assert_eq!(did("did(login, ever) >= 4 times"), 1);
    assert_eq!(did("did(login, ever) on >= 2 days"), 1);
    assert_eq!(did("last_did(login) >= 1 days ago"), 1);
    // Events are not portrait values.
    assert!(snap.portrait("u1").unwrap().is_empty());

    // Errors: wrong kind, bad day, unknown event.
    let mut load = t.load("c").unwrap();
    let flag = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
    assert!(load.event(flag, "u1", day, 1).is_err());
    let f = load
        .field(FieldSpec::new("login", FieldKind::Event))
        .unwrap();
    assert!(load.event(f, "u1", -1, 1).is_err());
    drop(load);
    let e = snap.crowd_text("did(nothing, last 3 days)").unwrap_err();
    assert!(matches!(e, crate::Error::FieldNotFound { .. }), "{e}");
    let e = snap
        .crowd(&Expr::Did {
            event: Path::new("login").unwrap(),
            window: Window::Last {
                days: 0,
                ending: None,
            },
            count: None,
        })
        .unwrap_err();
    assert!(e.to_string().contains("at least one day"), "{e}");
    assert!(t.set_time_options(19 * 60, 0).is_err());
    // Extreme windows are empty or everything, never an overflow.
    assert_eq!(
        did("did(login, last 4294967295 days ending DATE '0000-01-01')"),
        0
    );
    assert_eq!(did("did(login, last 4294967295 days)"), 2);
    assert_eq!(did("last_did(login) < 4294967295 days ago"), 2);
}

#[test]
fn periods_start_on_mondays_and_first_days() {
    // 2026-11-26 is a Thursday.
    let thu = day_of_date(2026, 11, 26);
    assert_eq!(format_day(Period::Week.start_of(thu)), "2026-11-23");
    assert_eq!(format_day(Period::Month.start_of(thu)), "2026-11-01");
    assert_eq!(
        format_day(Period::Month.next(day_of_date(2026, 12, 1))),
        "2027-01-01"
    );
    assert_eq!(
        format_day(Period::Month.advance(day_of_date(2026, 11, 1), 14)),
        "2028-01-01"
    );
    assert_eq!(Period::Day.advance(thu, 3), thu + 3);
    for d in [0, 1, 59, 365, 11_016, 20_000, 30_000] {
        assert_eq!(super::parse_day(&format_day(d)), Some(d));
    }
    assert_eq!(super::day_of_ms(-1, 0), -1);
    assert_eq!(super::day_of_ms(0, -60), -1);
}

/// Frequencies and `did(...)` counts over blocks whose days are dense (bitset containers),
/// runs, sparse (arrays), or a mix, in days and in times, for everyone and for a crowd,
/// against a naive count: blocks of arrays alone are counted in bytes (capped at 255 for
/// comparisons with smaller numbers: some users here did it 400 times), the others in
/// bit-sliced counters, and both add up.
#[test]
fn counts_of_dense_and_sparse_blocks_match_the_model() {
    const BLOCK: u32 = 1 << 16;
    let users = 4 * BLOCK;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let mut load = t.load("v1").unwrap();
    for id in 0..users {
        load.user(KeyRef::U64(u64::from(id))).unwrap();
    }
    let half = load.field(FieldSpec::new("half", FieldKind::Flag)).unwrap();
    let ev = load.field(FieldSpec::new("ev", FieldKind::Event)).unwrap();
    let mut rng = Rng(0x5eed_f00d);
    // (user, day) with activity, and each user's times.
    let mut active: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut times: BTreeMap<u32, u64> = BTreeMap::new();
    let mut crowd = BTreeSet::new();
    for u in (0..users).filter(|u| u % 3 != 1) {
        load.flag_id(half, u).unwrap();
        crowd.insert(u);
    }
    let days = 12;
    for d in 0..days {
        let members: Vec<u32> = (0..users)
            .filter(|&u| match u / BLOCK {
                // Block 0: dense on even days (a bitset), sparse on odd ones.
                0 => (u * 7 + d) % if d % 2 == 0 { 3 } else { 400 } == 0,
                // Block 1: always sparse.
                1 => (u * 13 + d * 5) % 300 == 0,
                // Block 2: a run on some days, nobody on the others.
                2 => d % 3 == 0 && (u % BLOCK) < 9_000 + 100 * d,
                // Block 3: sparse on every day, mostly the same users.
                _ => u % 97 == 0 || (u + d) % 1_000 == 0,
            })
            .collect();
        for u in members {
            let n = 1 + rng.below(3);
            load.event_id(ev, u, d0() + d as i32, n as u32).unwrap();
            active.insert((u, d));
            *times.entry(u).or_default() += n;
        }
    }
    // A few users of the sparse blocks did it 200 times on each of the first two days.
    for u in (BLOCK..users).filter(|u| u % 1_000 == 7 && u / BLOCK != 2) {
        for d in 0..2 {
            load.event_id(ev, u, d0() + d as i32, 200).unwrap();
            active.insert((u, d));
            *times.entry(u).or_default() += 200;
        }
    }
    load.commit().unwrap();
    // user -> (days, times)
    let mut model: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for &(u, _) in &active {
        model.entry(u).or_insert((0, times[&u])).0 += 1;
    }
    let snap = t.snapshot();
    let range = DayRange::new(d0(), d0() + days as i32 - 1);
    for (expr, in_crowd) in [
        (Expr::All, None),
        (Expr::Field(Path::new("half").unwrap()), Some(&crowd)),
    ] {
        let c = snap.crowd(&expr).unwrap();
        for measure in [Measure::Days, Measure::Times] {
            let f = c.frequency("ev", range, measure).unwrap();
            let mut want: BTreeMap<u64, u64> = BTreeMap::new();
            for (u, &(days, times)) in &model {
                if in_crowd.is_none_or(|c| c.contains(u)) {
                    let n = if measure == Measure::Days {
                        days
                    } else {
                        times
                    };
                    *want.entry(n).or_default() += 1;
                }
            }
            assert_eq!(
                f.histogram,
                want.into_iter().collect::<Vec<_>>(),
                "{expr:?} {measure:?}"
            );
        }
    }
    let window = format!(
        "DATE '{}' TO DATE '{}'",
        format_day(range.first),
        format_day(range.last)
    );
    for crowd_text in ["ALL", "half"] {
        for (op, holds) in [
            (">=", (|a, b| a >= b) as fn(u64, u64) -> bool),
            ("<", |a, b| a < b),
            ("=", |a, b| a == b),
        ] {
            for n in [1u64, 2, 3, 7, 254, 255, 256, 400, 401] {
                for measure in [Measure::Days, Measure::Times] {
                    let test = match measure {
                        Measure::Days => format!("did(ev, {window}) on {op} {n} days"),
                        Measure::Times => format!("did(ev, {window}) {op} {n} times"),
                    };
                    let text = format!("{crowd_text} AND {test}");
                    let got = snap.crowd_text(&text).unwrap().count().unwrap();
                    let want = (0..users)
                        .filter(|u| crowd_text == "ALL" || crowd.contains(u))
                        .filter(|u| {
                            let (days, times) = model.get(u).copied().unwrap_or_default();
                            let c = if measure == Measure::Days {
                                days
                            } else {
                                times
                            };
                            holds(c, n)
                        })
                        .count() as u64;
                    assert_eq!(got, want, "{text}");
                }
            }
        }
    }
}
