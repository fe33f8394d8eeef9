//! The `portrait` binary against the mock: output formats and exit codes.

use std::process::{Command, Output};

use crate::mock::{Mock, serve};

/// Runs `portrait` with `args` against `address` on a blocking thread.
async fn portrait(address: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portrait"));
    command
        .env_remove("PORTRAIT_ADDR")
        .arg("--addr")
        .arg(address)
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_count_prints_one_object_and_exits_0() {
    let address = serve(Mock::default()).await;
    let output = portrait(&address, &["--json", "count", "vip AND age >= 30"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"count\":42}\n");
    assert_eq!(stderr(&output), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn members_stream_to_stdout_in_both_formats() {
    let address = serve(Mock::default()).await;
    let output = portrait(&address, &["members", "vip"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "u1\nu2\nu3\nu4\nu5\n");

    let address = serve(Mock::default()).await;
    let output = portrait(&address, &["--json", "members", "vip", "--limit", "3"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = lines
        .iter()
        .flat_map(|l| l["keys"].as_array().unwrap())
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["u1", "u2", "u3"]);
    assert_eq!(
        stderr(&output),
        "",
        "no progress output when stderr is not a terminal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_exit_1_with_a_caret_on_stderr() {
    let address = serve(Mock::default()).await;
    let output = portrait(&address, &["count", "bad >> 3"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: invalid argument: unexpected token `>>` at line 1, column 5\n  |\n1 | bad >> 3\n  |     ^\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_without_calling_the_server() {
    let mock = Mock::default();
    let address = serve(mock.clone()).await;
    let output = portrait(&address, &["count"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("<EXPR>"), "{}", stderr(&output));
    assert_eq!(mock.state.lock().unwrap().count_calls, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_exits_1() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let output = portrait(&address, &["--timeout", "2", "count", "vip"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!("error: no answer from {address}: unavailable")),
        "{}",
        stderr(&output)
    );
}
