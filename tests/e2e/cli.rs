//! The `portrait` command line against the real server: its JSON and human output, and its exit
//! codes (0 success, 2 usage error, 1 any other error, with the message on stderr and nothing on
//! stdout).

use std::process::Output;

use portrait_engine::Value;
use serde_json::{Value as Json, json};

use crate::fixture::{
    EXPRESSIONS, expected, expected_count, expected_members, expected_portrait, key, server,
};

/// Runs `portrait --addr <shared server> ARGS…` on the blocking pool.
async fn portrait(args: &[&str]) -> Output {
    portrait_at(&server().url(), args).await
}

async fn portrait_at(url: &str, args: &[&str]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        portrait_e2e::cli(&url, &args)
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 on stderr")
}

/// Asserts a successful run with nothing on stderr; returns stdout.
fn success(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    assert_eq!(stderr(output), "");
    stdout(output)
}

/// Asserts a failed run with `code`, nothing on stdout and a message on stderr; returns it.
fn failure(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "", "nothing on stdout after an error");
    let message = stderr(output);
    assert!(!message.is_empty(), "an error message on stderr");
    message
}

#[tokio::test]
async fn json_count_prints_one_object_with_the_engine_count() {
    let snap = expected();
    for &expr in &EXPRESSIONS[..4] {
        let out = success(&portrait(&["--json", "count", expr]).await);
        assert_eq!(out.lines().count(), 1, "one line: {out:?}");
        let object: Json = serde_json::from_str(&out).expect("one JSON object");
        assert_eq!(
            object,
            json!({ "count": expected_count(&snap, expr) }),
            "{expr}"
        );
    }
}

#[tokio::test]
async fn human_count_is_a_bare_number() {
    let snap = expected();
    let expr = "demographic/gender = 'female' AND device/ios";
    let out = success(&portrait(&["count", expr]).await);
    assert_eq!(out, format!("{}\n", expected_count(&snap, expr)));
}

/// `YYYY-MM-DDT00:00:00Z` of a midnight in epoch milliseconds.
fn midnight_iso(ms: i64) -> String {
    let day_ms = 86_400_000;
    assert_eq!(
        ms.rem_euclid(day_ms),
        0,
        "the demo's timestamps are midnights"
    );
    // Howard Hinnant's `civil_from_days`.
    let z = ms.div_euclid(day_ms) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
}

fn human(value: &Value) -> String {
    match value {
        Value::Flag => "true".to_owned(),
        Value::Str(s) => s.clone(),
        Value::Strs(values) => values.join(", "),
        Value::Int(i) => i.to_string(),
        Value::Decimal { units, scale } => crate::fixture::decimal(i128::from(*units), *scale),
        Value::Timestamp(ms) => midnight_iso(*ms),
    }
}

#[tokio::test]
async fn human_portrait_is_an_aligned_table() {
    let snap = expected();
    let k = key(42);
    let mut values = snap.portrait(k.as_str()).unwrap();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    let width = values.iter().map(|(p, _)| p.len()).max().unwrap().max(4);
    let mut want = format!("key: {k}\n\n{:width$}  VALUE\n", "PATH");
    for (path, value) in &values {
        want.push_str(&format!("{path:width$}  {}\n", human(value)));
    }
    let out = success(&portrait(&["portrait", &k]).await);
    assert_eq!(out, want);
}

#[tokio::test]
async fn json_portrait_maps_paths_to_values() {
    let snap = expected();
    let k = key(7);
    let out = success(&portrait(&["--json", "portrait", &k]).await);
    assert_eq!(out.lines().count(), 1);
    let object: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(object["key"], json!(k));
    let values = object["values"].as_object().expect("a values object");
    let want = expected_portrait(&snap, &k);
    assert_eq!(values.len(), want.values.len());
    let mut engine = snap.portrait(k.as_str()).unwrap();
    engine.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, value) in engine {
        let json = match value {
            Value::Flag => json!(true),
            Value::Str(s) => json!(s),
            Value::Strs(v) => json!(v),
            Value::Int(i) | Value::Timestamp(i) => json!(i),
            Value::Decimal { units, scale } => {
                json!(crate::fixture::decimal(i128::from(units), scale))
            }
        };
        assert_eq!(values.get(&path), Some(&json), "{path}");
    }
}

#[tokio::test]
async fn json_members_stream_the_engine_keys() {
    let snap = expected();
    let expr = "device/ios AND demographic/age < 25";
    let out = success(&portrait(&["--json", "members", expr, "--limit", "150"]).await);
    let mut keys = Vec::new();
    for line in out.lines() {
        let batch: Json = serde_json::from_str(line).expect("one JSON object per batch");
        keys.extend(
            batch["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned()),
        );
    }
    let want = expected_members(&snap, expr);
    assert!(want.len() > 150);
    assert_eq!(keys, want[..150]);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [
        &["count"][..],
        &["frobnicate"],
        &["top", "ALL"],
        &["sample", "ALL"],
        &["count", "ALL", "--no-such-flag"],
        &["--timeout", "soon", "count", "ALL"],
    ] {
        let message = failure(&portrait(args).await, 2);
        assert!(message.starts_with("error: "), "{args:?}: {message}");
    }
}

#[tokio::test]
async fn server_errors_exit_1_with_the_message_on_stderr() {
    for json in [false, true] {
        let mut args = vec!["count", "demographic/agee >= 30"];
        if json {
            args.insert(0, "--json");
        }
        let message = failure(&portrait(&args).await, 1);
        assert!(message.starts_with("error: not found: "), "{message}");
        assert!(
            message.contains("field `demographic/agee` not found; did you mean `demographic/age`?"),
            "{message}"
        );
    }

    let message = failure(&portrait(&["count", "demographic/age >>= 30"]).await, 1);
    assert!(
        message.starts_with("error: invalid argument: "),
        "{message}"
    );
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "the message, then the expression with a caret: {message}"
    );
    assert_eq!(lines[2], "1 | demographic/age >>= 30");
    let caret = lines[3].find('^').expect("a caret") - lines[2].find('d').unwrap();
    let engine = portrait_engine::parse("demographic/age >>= 30").unwrap_err();
    assert_eq!(caret + 1, engine.column as usize, "{message}");

    let message = failure(&portrait(&["portrait", "nobody"]).await, 1);
    assert!(message.contains("user `nobody` not found"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_exits_1() {
    // Port 1 (tcpmux): nothing listens there, and it lies below the ephemeral range, so no
    // server that another test starts on port 0 can be given it (a port freed a moment ago
    // could be, and then answered).
    let url = "http://127.0.0.1:1".to_owned();
    let message = failure(&portrait_at(&url, &["count", "ALL"]).await, 1);
    assert!(
        message.contains(&format!("no answer from {url}")),
        "{message}"
    );
}
