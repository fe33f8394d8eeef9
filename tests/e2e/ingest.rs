//! `portrait load` against the real server: a CSV and a Parquet file streamed through the
//! command line, queried back; bad rows, versions and dropping a version.

use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use portrait_client::proto::KeyKind;
use portrait_e2e::{Server, ServerOptions};
use serde_json::Value as Json;

async fn portrait(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        portrait_e2e::cli(&url, &args)
    })
    .await
    .unwrap()
}

/// Runs the CLI with `--json`, expects success, parses stdout.
async fn json(url: &str, args: &[&str]) -> Json {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = portrait(url, &all).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A long Parquet file: user `u{i}` has `tag{i % 3}`, for `i < n`.
fn long_parquet(path: &std::path::Path, n: usize) {
    let schema = Arc::new(
        parse_message_type(
            "message m { required binary user (UTF8); required binary tag (UTF8); }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let users: Vec<ByteArray> = (0..n)
        .map(|i| ByteArray::from(format!("u{i}").as_str()))
        .collect();
    let tags: Vec<ByteArray> = (0..n)
        .map(|i| ByteArray::from(format!("tag{}", i % 3).as_str()))
        .collect();
    for values in [users, tags] {
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        c.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

#[tokio::test]
async fn load_csv_and_parquet_then_query_and_manage_versions() {
    let server = tokio::task::spawn_blocking(|| Server::start(ServerOptions::default()))
        .await
        .unwrap();
    let url = server.url();
    let client = portrait_client::Client::connect(url.clone()).await.unwrap();
    client
        .create_table("people", KeyKind::String)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "user_id,vip,city,age\nu1,true,bj,31\nu2,false,sh,17\nu3,true,bj,45\n",
    )
    .unwrap();
    let csv_path = csv.to_str().unwrap();
    let summary = json(
        &url,
        &[
            "--table",
            "people",
            "load",
            "--format",
            "wide",
            "--version",
            "d1",
            csv_path,
        ],
    )
    .await;
    assert_eq!(summary["rows"], 3, "{summary}");
    assert_eq!(summary["new_users"], 3, "{summary}");
    assert_eq!(summary["version"], "d1");
    let count = json(
        &url,
        &[
            "--table",
            "people",
            "count",
            "vip AND city = 'bj' AND age >= 40",
        ],
    )
    .await;
    assert_eq!(count["count"], 1, "{count}");

    let pq = dir.path().join("tags.parquet");
    long_parquet(&pq, 3000);
    let summary = json(
        &url,
        &[
            "--table",
            "people",
            "load",
            "--format",
            "long",
            "--version",
            "d1",
            pq.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(summary["rows"], 3000, "{summary}");
    let count = json(&url, &["--table", "people", "count", "tag0 OR tag1"]).await;
    assert_eq!(count["count"], 2000, "{count}");

    // A bad row fails the load with its row and publishes nothing; --skip-bad-rows counts it.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "user_id,tag\nu1,tag0\n,tag0\n").unwrap();
    let bad_path = bad.to_str().unwrap();
    let out = portrait(
        &url,
        &[
            "--table",
            "people",
            "load",
            "--format",
            "long",
            "--version",
            "d2",
            bad_path,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv") && err.contains("row 2") && err.contains("missing key"),
        "{err}"
    );
    let versions = json(&url, &["--table", "people", "versions", "tag0"]).await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    let summary = json(
        &url,
        &[
            "--table",
            "people",
            "load",
            "--format",
            "long",
            "--version",
            "d2",
            "--skip-bad-rows",
            bad_path,
        ],
    )
    .await;
    assert_eq!(summary["skipped_rows"], 1, "{summary}");

    let versions = json(&url, &["--table", "people", "versions", "tag0"]).await;
    let labels: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["d2", "d1"]);
    assert_eq!(versions["versions"][0]["users"], 1);
    assert_eq!(versions["versions"][1]["users"], 1000);
    json(&url, &["--table", "people", "drop-version", "tag0", "d2"]).await;
    let count = json(&url, &["--table", "people", "count", "tag0"]).await;
    assert_eq!(count["count"], 1000, "{count}");
    let out = portrait(&url, &["--table", "people", "drop-version", "tag0", "zz"]).await;
    assert_eq!(out.status.code(), Some(1));
}
