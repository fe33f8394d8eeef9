//! `BehaviourService`: every RPC compared with the engine's own answer on the same data, the
//! structured `did` predicate, and the refusals of bad requests.

use portrait_engine::behaviour::funnel::FunnelQuery;
use portrait_engine::behaviour::retention::RetentionQuery;
use portrait_engine::behaviour::{DayRange, Period, format_day, parse_day};
use portrait_engine::expr::{Measure, parse};
use portrait_proto::v1::{self, node};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::harness::{Harness, USERS, ast, text};

const CROWD: &str = "demographic/age >= 25";

fn range(first: &str, last: &str) -> Option<v1::DateRange> {
    Some(v1::DateRange {
        first: first.into(),
        last: last.into(),
    })
}

fn days(first: &str, last: &str) -> DayRange {
    DayRange::new(parse_day(first).unwrap(), parse_day(last).unwrap())
}

fn retention_request() -> v1::RetentionRequest {
    v1::RetentionRequest {
        table: "users".into(),
        expr: text(CROWD),
        cohort_event: "login".into(),
        return_event: "purchase".into(),
        cohorts: range("2026-11-01", "2026-11-07"),
        period: v1::Period::Day.into(),
        periods: 7,
        split: String::new(),
        reference_date: None,
        as_of: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

#[tokio::test]
async fn retention_matches_the_engine() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    for (split, reference) in [
        (None, None),
        (Some("demographic/gender"), None),
        (None, Some("2026-11-04")),
    ] {
        let mut request = retention_request();
        request.split = split.unwrap_or_default().into();
        request.reference_date = reference.map(Into::into);
        let got = h.behaviour().retention(request).await.unwrap().into_inner();
        let reference_day = reference.map(|r| parse_day(r).unwrap());
        let crowd = snap
            .crowd_with(&parse(CROWD).unwrap(), None, reference_day)
            .unwrap();
        let want = crowd
            .retention(&RetentionQuery {
                cohort_event: "login".into(),
                return_event: "purchase".into(),
                cohorts: days("2026-11-01", "2026-11-07"),
                period: Period::Day,
                periods: 7,
                split: split.map(Into::into),
                reference: reference_day,
            })
            .unwrap();
        assert_eq!(got.rows.len(), want.len(), "{split:?} {reference:?}");
        assert!(!want.is_empty());
        for (g, w) in got.rows.iter().zip(&want) {
            assert_eq!(g.group, w.group);
            assert_eq!(g.cohort, format_day(w.cohort));
            assert_eq!((g.size, &g.retained), (w.size, &w.retained));
            assert_eq!(g.rates.len(), w.retained.len());
            for (k, r) in g.rates.iter().enumerate() {
                assert!(close(*r, w.rate(k)), "{r} vs {}", w.rate(k));
            }
        }
        assert!(got.rows.iter().any(|r| r.size > 0 && r.retained[0] > 0));
        let expected_reference = reference.unwrap_or("2026-11-25");
        assert_eq!(got.reference_date, expected_reference);
        if reference.is_some() {
            // Cohorts after the reference day are left out; offsets stop at it.
            assert_eq!(got.rows.last().unwrap().cohort, "2026-11-04");
            assert_eq!(got.rows[0].retained.len(), 4);
        }
        if split.is_some() {
            assert_eq!(got.rows.len(), 7 * 3);
            assert_eq!(got.rows[0].group.as_deref(), Some("female"));
        }
    }
}

#[tokio::test]
async fn funnel_matches_the_engine() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    let steps = ["view", "add_cart", "purchase", "pay"];
    for split in [None, Some("demographic/gender")] {
        let got = h
            .behaviour()
            .funnel(v1::FunnelRequest {
                table: "users".into(),
                expr: None,
                steps: steps.iter().map(|s| (*s).to_owned()).collect(),
                window_days: 7,
                starts: range("2026-10-27", "2026-11-18"),
                split: split.unwrap_or_default().into(),
                reference_date: None,
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner();
        let want = snap
            .crowd(&parse("ALL").unwrap())
            .unwrap()
            .funnel(&FunnelQuery {
                steps: steps.iter().map(|s| (*s).to_owned()).collect(),
                window: 7,
                starts: days("2026-10-27", "2026-11-18"),
                split: split.map(Into::into),
            })
            .unwrap();
        assert_eq!(got.steps, steps);
        assert_eq!(got.groups.len(), want.len());
        for (g, w) in got.groups.iter().zip(&want) {
            assert_eq!(g.group, w.group);
            let users: Vec<u64> = g.steps.iter().map(|s| s.users).collect();
            assert_eq!(users, w.reached);
            for (i, step) in g.steps.iter().enumerate() {
                assert_eq!(step.event, steps[i]);
                assert!(close(step.conversion, w.conversion(i)));
                assert!(close(step.overall, w.overall(i)));
                assert_eq!(step.drop_off, w.drop_off(i));
            }
        }
        assert!(got.groups[0].steps[0].users > got.groups[0].steps[3].users);
        assert!(got.groups[0].steps[3].users > 0);
    }
}

#[tokio::test]
async fn frequency_and_active_match_the_engine() {
    let h = Harness::start().await;
    let snap = h.snapshot();
    let crowd = snap.crowd(&parse(CROWD).unwrap()).unwrap();
    for (wire, measure) in [
        (v1::Measure::Unspecified, Measure::Days),
        (v1::Measure::Days, Measure::Days),
        (v1::Measure::Times, Measure::Times),
    ] {
        let got = h
            .behaviour()
            .frequency(v1::FrequencyRequest {
                table: "users".into(),
                expr: text(CROWD),
                event: "login".into(),
                days: range("2026-11-01", "2026-11-25"),
                measure: wire.into(),
                reference_date: None,
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner();
        let want = crowd
            .frequency("login", days("2026-11-01", "2026-11-25"), measure)
            .unwrap();
        assert_eq!(got.crowd, want.crowd);
        assert_eq!(got.inactive, want.inactive());
        assert_eq!(got.measure(), convert_measure(measure));
        let histogram: Vec<(u64, u64)> = got.histogram.iter().map(|b| (b.n, b.users)).collect();
        assert_eq!(histogram, want.histogram);
        assert!(histogram.len() > 3, "{histogram:?}");
        for b in &got.histogram {
            assert!(close(b.share, b.users as f64 / got.crowd as f64));
        }
    }

    for (wire, period) in [
        (v1::Period::Day, Period::Day),
        (v1::Period::Week, Period::Week),
        (v1::Period::Month, Period::Month),
    ] {
        let got = h
            .behaviour()
            .active(v1::ActiveRequest {
                table: "users".into(),
                expr: text(CROWD),
                event: "login".into(),
                days: range("2026-10-27", "2026-11-25"),
                period: wire.into(),
                reference_date: None,
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner();
        let want = crowd
            .active("login", days("2026-10-27", "2026-11-25"), period)
            .unwrap();
        let rows: Vec<(String, u64)> = got
            .periods
            .iter()
            .map(|p| (p.start.clone(), p.users))
            .collect();
        let expected: Vec<(String, u64)> = want
            .iter()
            .map(|r| (format_day(r.period), r.users))
            .collect();
        assert_eq!(rows, expected, "{period:?}");
        assert_eq!(got.crowd, crowd.count().unwrap());
        assert!(got.periods.iter().all(|p| p.users > 0));
    }
}

fn convert_measure(m: Measure) -> v1::Measure {
    match m {
        Measure::Times => v1::Measure::Times,
        Measure::Days => v1::Measure::Days,
    }
}

#[tokio::test]
async fn did_counts_agree_in_both_faces() {
    let h = Harness::start().await;
    let expr = "did(purchase, last 7 days) >= 2 AND NOT did(login, last 3 days)";
    let want = h
        .snapshot()
        .crowd(&parse(expr).unwrap())
        .unwrap()
        .count()
        .unwrap();
    assert!(want > 0 && want < u64::from(USERS), "{want}");
    let wrap = |kind| v1::Node { kind: Some(kind) };
    let last = |days| {
        Some(v1::Window {
            kind: Some(v1::window::Kind::Last(v1::window::LastDays {
                days,
                ending: String::new(),
            })),
        })
    };
    let tree = wrap(node::Kind::LogicalAnd(node::And {
        operands: vec![
            wrap(node::Kind::Did(node::Did {
                event: "purchase".into(),
                window: last(7),
                count: Some(v1::DidCount {
                    op: v1::CompareOp::Ge.into(),
                    n: 2,
                    measure: v1::Measure::Times.into(),
                }),
            })),
            wrap(node::Kind::LogicalNot(Box::new(node::Not {
                operand: Some(Box::new(wrap(node::Kind::Did(node::Did {
                    event: "login".into(),
                    window: last(3),
                    count: None,
                })))),
            }))),
        ],
    }));
    for expr in [text(expr), ast(tree)] {
        let got = h
            .query()
            .count(v1::CountRequest {
                table: "users".into(),
                expr,
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_clear_messages() {
    let h = Harness::start().await;
    let retention = |edit: fn(&mut v1::RetentionRequest)| {
        let mut request = retention_request();
        edit(&mut request);
        let mut client = h.behaviour();
        async move { client.retention(request).await.unwrap_err() }
    };
    let cases: Vec<(tonic::Status, Code, &str)> = vec![
        (
            retention(|r| r.cohort_event = "logn".into()).await,
            Code::NotFound,
            "`logn`",
        ),
        (
            retention(|r| r.return_event = "demographic/age".into()).await,
            Code::InvalidArgument,
            "demographic/age",
        ),
        (
            retention(|r| r.cohorts = None).await,
            Code::InvalidArgument,
            "cohorts is required",
        ),
        (
            retention(|r| r.cohorts = range("2026-11-07", "2026-11-01")).await,
            Code::InvalidArgument,
            "before it starts",
        ),
        (
            retention(|r| r.cohorts = range("2026-11-01", "2026-11-31")).await,
            Code::InvalidArgument,
            "cohorts.last: \"2026-11-31\" is not a calendar date",
        ),
        (
            retention(|r| r.split = "demographic/age".into()).await,
            Code::InvalidArgument,
            "demographic/age",
        ),
        (
            retention(|r| r.reference_date = Some("soon".into())).await,
            Code::InvalidArgument,
            "reference_date",
        ),
        (
            retention(|r| r.period = 9).await,
            Code::InvalidArgument,
            "period must be",
        ),
        (
            retention(|r| r.cohort_event = String::new()).await,
            Code::InvalidArgument,
            "cohort_event is required",
        ),
        (
            retention(|r| r.expr = text("did(login, last 0 days)")).await,
            Code::InvalidArgument,
            "",
        ),
        (
            retention(|r| r.table = "nope".into()).await,
            Code::NotFound,
            "`nope`",
        ),
        (
            retention(|r| r.periods = 2_000_000).await,
            Code::ResourceExhausted,
            "retention cells",
        ),
    ];
    for (status, code, needle) in cases {
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "{}", status.message());
    }

    let status = h
        .behaviour()
        .funnel(v1::FunnelRequest {
            table: "users".into(),
            steps: vec!["view".into()],
            window_days: 7,
            starts: range("2026-11-01", "2026-11-07"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("2 to 32 steps"),
        "{}",
        status.message()
    );

    let status = h
        .behaviour()
        .frequency(v1::FrequencyRequest {
            table: "users".into(),
            event: "device/ios".into(),
            days: range("2026-11-01", "2026-11-07"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("`device/ios`"),
        "{}",
        status.message()
    );

    let status = h
        .behaviour()
        .active(v1::ActiveRequest {
            table: "users".into(),
            event: "login".into(),
            days: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("days is required"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn health_knows_the_behaviour_service() {
    let h = Harness::start().await;
    let status = HealthClient::new(h.channel.clone())
        .check(HealthCheckRequest {
            service: "portrait.v1.BehaviourService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
}
