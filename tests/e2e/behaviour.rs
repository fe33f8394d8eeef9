//! Behaviour analyses end to end: the `portrait` subcommands `retention`, `funnel`, `freq` and
//! `active` with `--json` against the real server, compared with the engine computed directly
//! on the same generated data; and a `did(...)` crowd sent through the structured AST.

use std::process::Output;

use portrait_client::ast::{and, did, did_count, last_days, last_did, not};
use portrait_client::proto::{CompareOp, Measure as WireMeasure};
use portrait_engine::behaviour::funnel::FunnelQuery;
use portrait_engine::behaviour::retention::RetentionQuery;
use portrait_engine::behaviour::{DayRange, Period, format_day, parse_day};
use portrait_engine::expr::Measure;
use serde_json::{Value as Json, json};

use crate::fixture::{client, close, expected, expected_count, server};

const CROWD: &str = "demographic/age >= 30 OR device/ios";

async fn portrait(args: &[&str]) -> Output {
    let url = server().url();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        portrait_e2e::cli(&url, &args)
    })
    .await
    .unwrap()
}

/// The one JSON object a successful `--json` run prints.
fn json_of(output: &Output) -> Json {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    serde_json::from_str(&stdout).expect("one JSON object")
}

fn days(first: &str, last: &str) -> DayRange {
    DayRange::new(parse_day(first).unwrap(), parse_day(last).unwrap())
}

fn rates_close(got: &Json, want: impl Iterator<Item = f64>) {
    let got: Vec<f64> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    let want: Vec<f64> = want.collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(close(*g, *w), "{g} vs {w}");
    }
}

#[tokio::test]
async fn retention_json_matches_the_engine() {
    let snap = expected();
    let crowd = snap.crowd_text(CROWD).unwrap();
    for split in [None, Some("demographic/gender")] {
        let mut args = vec![
            "--json",
            "retention",
            "--cohort",
            "login",
            "--return",
            "purchase",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-07",
            "--period",
            "day",
            "--periods",
            "7",
            "--where",
            CROWD,
        ];
        if let Some(dim) = split {
            args.extend(["--split", dim]);
        }
        let got = json_of(&portrait(&args).await);
        let want = crowd
            .retention(&RetentionQuery {
                cohort_event: "login".into(),
                return_event: "purchase".into(),
                cohorts: days("2026-11-01", "2026-11-07"),
                period: Period::Day,
                periods: 7,
                split: split.map(Into::into),
                reference: None,
            })
            .unwrap();
        assert_eq!(got["period"], "day");
        assert_eq!(got["reference_date"], "2026-11-25");
        let rows = got["rows"].as_array().unwrap();
        assert_eq!(rows.len(), want.len());
        assert_eq!(rows.len(), 7 * if split.is_some() { 3 } else { 1 });
        for (g, w) in rows.iter().zip(&want) {
            assert_eq!(g["group"], json!(w.group));
            assert_eq!(g["cohort"], format_day(w.cohort));
            assert_eq!(g["size"], w.size);
            assert_eq!(g["retained"], json!(w.retained));
            rates_close(&g["rates"], (0..w.retained.len()).map(|k| w.rate(k)));
        }
        assert!(
            want.iter()
                .any(|w| w.retained.iter().skip(1).any(|&n| n > 0))
        );
    }
}

#[tokio::test]
async fn funnel_json_matches_the_engine() {
    let snap = expected();
    let steps = ["view", "add_cart", "purchase", "pay"];
    let args = [
        "--json",
        "funnel",
        "view",
        "add_cart",
        "purchase",
        "pay",
        "--window",
        "7",
        "--from",
        "2026-10-27",
        "--to",
        "2026-11-18",
        "--split",
        "demographic/gender",
        "--where",
        CROWD,
    ];
    let got = json_of(&portrait(&args).await);
    let want = snap
        .crowd_text(CROWD)
        .unwrap()
        .funnel(&FunnelQuery {
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            window: 7,
            starts: days("2026-10-27", "2026-11-18"),
            split: Some("demographic/gender".into()),
        })
        .unwrap();
    assert_eq!(got["steps"], json!(steps));
    let groups = got["groups"].as_array().unwrap();
    assert_eq!(groups.len(), want.len());
    assert_eq!(groups.len(), 3);
    for (g, w) in groups.iter().zip(&want) {
        assert_eq!(g["group"], json!(w.group));
        let got_steps = g["steps"].as_array().unwrap();
        assert_eq!(got_steps.len(), steps.len());
        for (i, s) in got_steps.iter().enumerate() {
            assert_eq!(s["event"], steps[i]);
            assert_eq!(s["users"], w.reached[i]);
            assert_eq!(s["drop_off"], w.drop_off(i));
            assert!(close(s["conversion"].as_f64().unwrap(), w.conversion(i)));
            assert!(close(s["overall"].as_f64().unwrap(), w.overall(i)));
        }
        assert!(w.reached[3] > 0 && w.reached[3] < w.reached[0], "{w:?}");
    }
}

#[tokio::test]
async fn freq_json_matches_the_engine() {
    let snap = expected();
    let crowd = snap.crowd_text(CROWD).unwrap();
    for (flag, measure, name) in [
        (None, Measure::Days, "days"),
        (Some("--days"), Measure::Days, "days"),
        (Some("--times"), Measure::Times, "times"),
    ] {
        let mut args = vec![
            "--json",
            "freq",
            "purchase",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-25",
            "--where",
            CROWD,
        ];
        args.extend(flag);
        let got = json_of(&portrait(&args).await);
        let want = crowd
            .frequency("purchase", days("2026-11-01", "2026-11-25"), measure)
            .unwrap();
        assert_eq!(got["measure"], name);
        assert_eq!(got["crowd"], want.crowd);
        assert_eq!(got["inactive"], want.inactive());
        let histogram: Vec<(u64, u64)> = got["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["n"].as_u64().unwrap(), b["users"].as_u64().unwrap()))
            .collect();
        assert_eq!(histogram, want.histogram);
        assert!(histogram.len() >= 2, "{histogram:?}");
    }
}

#[tokio::test]
async fn active_json_matches_the_engine() {
    let snap = expected();
    let crowd = snap.crowd_text(CROWD).unwrap();
    for (name, period) in [("day", Period::Day), ("week", Period::Week)] {
        let args = [
            "--json",
            "active",
            "login",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-25",
            "--period",
            name,
            "--where",
            CROWD,
        ];
        let got = json_of(&portrait(&args).await);
        let want = crowd
            .active("login", days("2026-11-01", "2026-11-25"), period)
            .unwrap();
        assert_eq!(got["period"], name);
        assert_eq!(got["crowd"], crowd.count().unwrap());
        let periods: Vec<(String, u64)> = got["periods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["start"].as_str().unwrap().to_owned(),
                    p["users"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, u64)> = want
            .iter()
            .map(|r| (format_day(r.period), r.users))
            .collect();
        assert_eq!(periods, expected);
        // 2026-11-01 is a Sunday: its whole ISO week, from Monday 2026-10-26, is the first.
        let (count, first) = match period {
            Period::Week => (5, "2026-10-26"),
            _ => (25, "2026-11-01"),
        };
        assert_eq!((periods.len(), periods[0].0.as_str()), (count, first));
    }
}

#[tokio::test]
async fn human_tables_and_errors() {
    let out = portrait(&[
        "active",
        "login",
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-25",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("DAY"), "{text}");
    assert!(text.contains("2026-11-25"), "{text}");
    assert!(text.ends_with("crowd: 20,000 users\n"), "{text}");

    let bad_date = portrait(&[
        "freq",
        "purchase",
        "--from",
        "2026-11-31",
        "--to",
        "2026-12-01",
    ])
    .await;
    assert_eq!(bad_date.status.code(), Some(2));
    assert!(bad_date.stdout.is_empty());

    let unknown = portrait(&[
        "--json",
        "freq",
        "purchse",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
    ])
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(unknown.stdout.is_empty());
    let message = String::from_utf8(unknown.stderr).unwrap();
    assert!(message.contains("`purchse`"), "{message}");
}

#[tokio::test]
async fn did_crowds_count_the_same_through_the_ast() {
    let snap = expected();
    let text = "did(purchase, last 7 days) >= 2 AND NOT did(login, last 3 days)";
    let want = expected_count(&snap, text);
    assert!(want > 0, "the crowd is not empty");
    let client = client().await;
    let tree = and([
        did_count(
            "purchase",
            last_days(7),
            CompareOp::Ge,
            2,
            WireMeasure::Times,
        ),
        not(did("login", last_days(3))),
    ]);
    assert_eq!(client.count(tree).await.unwrap(), want);
    assert_eq!(client.count(text).await.unwrap(), want);

    let churned = expected_count(&snap, "last_did(login) > 10 days ago");
    assert!(churned > 0);
    assert_eq!(
        client
            .count(last_did("login").days_ago(CompareOp::Gt, 10))
            .await
            .unwrap(),
        churned
    );
}
