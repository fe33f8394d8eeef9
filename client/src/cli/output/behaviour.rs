//! Rendering of the behaviour analyses: retention matrices, funnels, frequency histograms and
//! activity series.
//!
//! Tables show counts grouped by thousands and rates as percentages; JSON keeps counts raw and
//! rates as fractions in `[0, 1]`, with dates as `YYYY-MM-DD` strings and an absent split group
//! as `null`.

use portrait_client::proto as v1;
use serde_json::{Value as Json, json};

use super::{Align, BAR_WIDTH, Table, group_digits, percent};

fn period_name(period: v1::Period) -> &'static str {
    match period {
        v1::Period::Week => "week",
        v1::Period::Month => "month",
        v1::Period::Day | v1::Period::Unspecified => "day",
    }
}

fn measure_name(measure: v1::Measure) -> &'static str {
    match measure {
        v1::Measure::Times => "times",
        v1::Measure::Days | v1::Measure::Unspecified => "days",
    }
}

/// A count with its rate: `1,234 (45.6%)`.
fn count_rate(count: u64, rate: f64) -> String {
    format!("{} ({:.1}%)", group_digits(count), rate * 100.0)
}

pub(super) fn retention_human(period: v1::Period, r: &v1::RetentionResponse) -> String {
    let split = r.rows.iter().any(|row| row.group.is_some());
    let offsets = r
        .rows
        .iter()
        .map(|row| row.retained.len())
        .max()
        .unwrap_or(0);
    let unit = period_name(period).to_uppercase();
    let labels: Vec<String> = (0..offsets).map(|k| format!("{unit} {k}")).collect();
    let mut columns = vec![("COHORT", Align::Left)];
    if split {
        columns.push(("GROUP", Align::Left));
    }
    columns.push(("USERS", Align::Right));
    columns.extend(labels.iter().map(|l| (l.as_str(), Align::Right)));
    let mut table = Table::new(&columns);
    for row in &r.rows {
        let mut cells = vec![row.cohort.clone()];
        if split {
            cells.push(row.group.clone().unwrap_or_default());
        }
        cells.push(group_digits(row.size));
        cells.extend(
            row.retained
                .iter()
                .zip(&row.rates)
                .map(|(&n, &rate)| count_rate(n, rate)),
        );
        table.row(cells);
    }
    let reference = if r.reference_date.is_empty() {
        "none (no events)"
    } else {
        &r.reference_date
    };
    format!("{}\nreference date: {reference}\n", table.render())
}

pub(super) fn retention_json(period: v1::Period, r: &v1::RetentionResponse) -> Json {
    json!({
        "period": period_name(period),
        "reference_date": r.reference_date,
        "rows": r.rows.iter().map(|row| json!({
            "group": row.group,
            "cohort": row.cohort,
            "size": row.size,
            "retained": row.retained,
            "rates": row.rates,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn funnel_human(f: &v1::FunnelResponse) -> String {
    let split = f.groups.iter().any(|g| g.group.is_some());
    let mut columns = Vec::new();
    if split {
        columns.push(("GROUP", Align::Left));
    }
    columns.extend([
        ("STEP", Align::Right),
        ("EVENT", Align::Left),
        ("USERS", Align::Right),
        ("CONVERSION", Align::Right),
        ("OVERALL", Align::Right),
        ("DROP-OFF", Align::Right),
    ]);
    let mut table = Table::new(&columns);
    for group in &f.groups {
        for (i, step) in group.steps.iter().enumerate() {
            let mut cells = Vec::new();
            if split {
                cells.push(if i == 0 {
                    group.group.clone().unwrap_or_default()
                } else {
                    String::new()
                });
            }
            cells.extend([
                (i + 1).to_string(),
                step.event.clone(),
                group_digits(step.users),
                percent(step.conversion),
                percent(step.overall),
                group_digits(step.drop_off),
            ]);
            table.row(cells);
        }
    }
    table.render()
}

pub(super) fn funnel_json(f: &v1::FunnelResponse) -> Json {
    json!({
        "steps": f.steps,
        "groups": f.groups.iter().map(|g| json!({
            "group": g.group,
            "steps": g.steps.iter().map(|s| json!({
                "event": s.event,
                "users": s.users,
                "conversion": s.conversion,
                "overall": s.overall,
                "drop_off": s.drop_off,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn frequency_human(f: &v1::FrequencyResponse) -> String {
    let unit = measure_name(f.measure()).to_uppercase();
    let mut table = Table::new(&[
        (unit.as_str(), Align::Right),
        ("USERS", Align::Right),
        ("SHARE", Align::Right),
        ("", Align::Left),
    ]);
    let peak = f.histogram.iter().map(|b| b.users).max().unwrap_or(0);
    for b in &f.histogram {
        let bar = if peak == 0 {
            0
        } else {
            ((b.users as f64 / peak as f64) * BAR_WIDTH as f64).round() as usize
        };
        table.row(vec![
            group_digits(b.n),
            group_digits(b.users),
            percent(b.share),
            "█".repeat(bar),
        ]);
    }
    let inactive = if f.crowd == 0 {
        0.0
    } else {
        f.inactive as f64 / f.crowd as f64
    };
    format!(
        "{}\ncrowd: {} users, inactive: {} ({})\n",
        table.render(),
        group_digits(f.crowd),
        group_digits(f.inactive),
        percent(inactive)
    )
}

pub(super) fn frequency_json(f: &v1::FrequencyResponse) -> Json {
    json!({
        "measure": measure_name(f.measure()),
        "crowd": f.crowd,
        "inactive": f.inactive,
        "histogram": f.histogram.iter().map(|b| json!({
            "n": b.n,
            "users": b.users,
            "share": b.share,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn active_human(period: v1::Period, a: &v1::ActiveResponse) -> String {
    let header = period_name(period).to_uppercase();
    let mut table = Table::new(&[
        (header.as_str(), Align::Left),
        ("USERS", Align::Right),
        ("SHARE", Align::Right),
    ]);
    for p in &a.periods {
        table.row(vec![
            p.start.clone(),
            group_digits(p.users),
            percent(p.share),
        ]);
    }
    format!(
        "{}\ncrowd: {} users\n",
        table.render(),
        group_digits(a.crowd)
    )
}

pub(super) fn active_json(period: v1::Period, a: &v1::ActiveResponse) -> Json {
    json!({
        "period": period_name(period),
        "crowd": a.crowd,
        "periods": a.periods.iter().map(|p| json!({
            "start": p.start,
            "users": p.users,
            "share": p.share,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_renders_counts_and_rates_per_offset() {
        let response = v1::RetentionResponse {
            rows: vec![
                v1::RetentionRow {
                    group: None,
                    cohort: "2026-11-01".into(),
                    size: 2_000,
                    retained: vec![2_000, 500],
                    rates: vec![1.0, 0.25],
                },
                v1::RetentionRow {
                    group: None,
                    cohort: "2026-11-02".into(),
                    size: 0,
                    retained: vec![0],
                    rates: vec![0.0],
                },
            ],
            reference_date: "2026-11-02".into(),
        };
        let text = retention_human(v1::Period::Day, &response);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["COHORT", "USERS", "DAY", "0", "DAY", "1"]
        );
        assert!(lines[1].starts_with("2026-11-01"), "{text}");
        assert!(lines[1].ends_with("500 (25.0%)"), "{text}");
        assert!(lines[2].ends_with("0 (0.0%)"), "{text}");
        assert!(text.ends_with("reference date: 2026-11-02\n"), "{text}");
        let object = retention_json(v1::Period::Week, &response);
        assert_eq!(object["period"], "week");
        assert_eq!(object["rows"][0]["retained"], json!([2_000, 500]));
        assert_eq!(object["rows"][0]["group"], Json::Null);
    }

    #[test]
    fn funnel_names_groups_once() {
        let step = |event: &str, users, conversion, drop_off| v1::FunnelStep {
            event: event.into(),
            users,
            conversion,
            overall: conversion,
            drop_off,
        };
        let response = v1::FunnelResponse {
            steps: vec!["view".into(), "pay".into()],
            groups: vec![v1::FunnelGroup {
                group: Some("female".into()),
                steps: vec![step("view", 1_000, 1.0, 900), step("pay", 100, 0.1, 0)],
            }],
        };
        let text = funnel_human(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("GROUP"), "{text}");
        assert!(
            lines[1].starts_with("female") && lines[1].contains("1,000"),
            "{text}"
        );
        assert!(lines[2].trim_start().starts_with("2  pay"), "{text}");
        assert!(lines[2].contains("10.00%"), "{text}");
        let object = funnel_json(&response);
        assert_eq!(object["groups"][0]["group"], "female");
        assert_eq!(object["groups"][0]["steps"][0]["drop_off"], 900);
    }

    #[test]
    fn frequency_and_activity_summaries() {
        let response = v1::FrequencyResponse {
            crowd: 10,
            inactive: 4,
            histogram: vec![v1::FrequencyBucket {
                n: 1,
                users: 6,
                share: 0.6,
            }],
            measure: v1::Measure::Times.into(),
        };
        let text = frequency_human(&response);
        assert!(text.starts_with("TIMES"), "{text}");
        assert!(
            text.ends_with("crowd: 10 users, inactive: 4 (40.00%)\n"),
            "{text}"
        );
        assert_eq!(frequency_json(&response)["measure"], "times");

        let active = v1::ActiveResponse {
            periods: vec![v1::ActivePeriod {
                start: "2026-11-02".into(),
                users: 1_500,
                share: 0.5,
            }],
            crowd: 3_000,
        };
        let text = active_human(v1::Period::Week, &active);
        assert!(text.starts_with("WEEK"), "{text}");
        assert!(text.contains("2026-11-02  1,500  50.00%"), "{text}");
        assert_eq!(
            active_json(v1::Period::Week, &active)["periods"][0]["users"],
            1_500
        );
    }
}
