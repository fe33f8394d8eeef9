//! Real-time writes end to end, each test on its own server: writes (values and event appends)
//! through the client and the command line are visible to the next query; bad batches are
//! refused whole with the right code; acknowledged batches survive SIGKILLs of the real `portraitd` at random moments (with
//! compactions running) and no batch is ever half there; a torn log tail is truncated with a
//! warning; an online backup taken while writes go on restores into a new server.
//!
//! The crash tests write batches that are easy to audit: batch `b` sets, for its own
//! [`KEYS_PER_BATCH`] new keys, the flag `hit` and the int `n = b` of table `rt`. A batch is
//! there when all its keys exist with both values, absent when none of its keys exists;
//! anything else is a half-applied batch.
//!
//! The random moments come from a seeded generator: `PORTRAIT_E2E_SEED=<n>` replays a run (the
//! seed is printed on stderr).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portrait_client::proto::{self as v1, KeyKind, value::Kind as ValueKind};
use portrait_client::request::LoadFormat;
use portrait_client::{Client, Error, RetryPolicy, value};
use portrait_e2e::{Server, ServerOptions, Stop, binaries};
use serde_json::Value as Json;
use tokio::sync::watch;

use crate::fixture::key;

/// Keys each audited batch writes (two writes each).
const KEYS_PER_BATCH: usize = 20;
/// The audited table.
const RT: &str = "rt";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed of this run: `PORTRAIT_E2E_SEED`, else a fixed one.
fn seed() -> u64 {
    let seed = std::env::var("PORTRAIT_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0005);
    eprintln!("realtime: seed {seed} (PORTRAIT_E2E_SEED={seed} replays this run)");
    seed
}

async fn start(options: ServerOptions) -> Server {
    tokio::task::spawn_blocking(move || Server::start(options))
        .await
        .unwrap()
}

/// A server without demo data, with extra flags.
async fn start_with(args: &[&str]) -> Server {
    start(ServerOptions {
        args: args.iter().map(|&a| a.to_owned()).collect(),
        ..ServerOptions::default()
    })
    .await
}

/// Stops `server` with `how` on the blocking pool.
async fn stop(mut server: Server, how: Stop) -> Server {
    tokio::task::spawn_blocking(move || {
        server.stop(how);
        server
    })
    .await
    .unwrap()
}

/// Starts the stopped `server` again on its address and data directory.
async fn resume(mut server: Server) -> Server {
    tokio::task::spawn_blocking(move || {
        server.resume();
        server
    })
    .await
    .unwrap()
}

/// A client of `server` on `table` that never retries, so that every failure shows.
async fn connect(server: &Server, table: &str) -> Client {
    Client::builder(server.url())
        .default_table(table)
        .retry_policy(RetryPolicy::none())
        .connect()
        .await
        .expect("connect")
}

/// Runs `portrait --addr URL ARGS…` on the blocking pool.
async fn portrait(url: &str, args: &[&str]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        portrait_e2e::cli(&url, &args)
    })
    .await
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI with `--json`, expects success, parses stdout.
async fn json(url: &str, args: &[&str]) -> Json {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = portrait(url, &all).await;
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs the CLI, expects exit code `code` and nothing on stdout; returns stderr.
async fn fails(url: &str, args: &[&str], code: i32) -> String {
    let out = portrait(url, args).await;
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    stderr(&out)
}

/// Loads the CSV `text` into `table` as version `v1`, with the TOML `mapping`.
async fn load_csv(client: &Client, table: &str, format: LoadFormat, text: &str, mapping: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.csv");
    std::fs::write(&path, text).unwrap();
    client
        .load(format)
        .table(table)
        .mapping(mapping)
        .version("v1")
        .send_file(&path, |_| {})
        .await
        .unwrap_or_else(|e| panic!("loading {text:?} into {table}: {e}"));
}

/// Creates table `rt` (string keys) with the flag `hit` and the int `n`, held by user `seed`.
async fn create_rt(client: &Client) {
    client.create_table(RT, KeyKind::String).await.unwrap();
    let mapping = "[fields.hit]\nkind = \"flag\"\n[fields.n]\nkind = \"int\"\n";
    load_csv(
        client,
        RT,
        LoadFormat::Wide,
        "key,hit,n\nseed,true,7\n",
        mapping,
    )
    .await;
}

fn batch_keys(batch: u64) -> Vec<String> {
    (0..KEYS_PER_BATCH)
        .map(|j| format!("b{batch:05}-{j:02}"))
        .collect()
}

/// Sends audited batch `batch` to table `rt`.
async fn send_batch(client: &Client, batch: u64) -> Result<v1::WriteResponse, Error> {
    let n = i64::try_from(batch).unwrap();
    let mut request = client.write().table(RT);
    for key in batch_keys(batch) {
        request = request.set(&key, "hit", true).set(key, "n", n);
    }
    request.await
}

/// Whether each audited batch was acknowledged (`true`) or its outcome is unknown (`false`).
type Ledger = Vec<bool>;

/// Checks every batch of `ledger` on the server behind `client` (table `rt`): each batch is all
/// there or all absent, and every acknowledged one is there. Returns which batches are there.
async fn audit(client: &Client, ledger: &Ledger) -> Vec<bool> {
    let keys: Vec<String> = (0..ledger.len() as u64).flat_map(batch_keys).collect();
    let mut values: HashMap<String, (bool, Option<i64>)> = HashMap::new();
    for chunk in keys.chunks(5_000) {
        let response = client
            .batch_portrait(chunk)
            .table(RT)
            .await
            .expect("batch portrait");
        for p in response.portraits {
            let mut hit = false;
            let mut n = None;
            for v in p.values {
                match (v.path.as_str(), v.value.and_then(|v| v.kind)) {
                    ("hit", Some(ValueKind::FlagValue(true))) => hit = true,
                    ("n", Some(ValueKind::IntValue(i))) => n = Some(i),
                    (path, value) => panic!("key {} has an unexpected {path} = {value:?}", p.key),
                }
            }
            values.insert(p.key, (hit, n));
        }
    }
    let mut present = Vec::with_capacity(ledger.len());
    for (b, &acked) in ledger.iter().enumerate() {
        let b = b as u64;
        let want = (true, Some(i64::try_from(b).unwrap()));
        let complete = batch_keys(b)
            .iter()
            .filter(|k| values.get(*k) == Some(&want))
            .count();
        let known = batch_keys(b)
            .iter()
            .filter(|k| values.contains_key(*k))
            .count();
        assert!(
            (complete, known) == (KEYS_PER_BATCH, KEYS_PER_BATCH) || (complete, known) == (0, 0),
            "batch {b} is half there: {complete} of {KEYS_PER_BATCH} keys complete, {known} known"
        );
        assert!(
            !acked || complete == KEYS_PER_BATCH,
            "acknowledged batch {b} is missing"
        );
        present.push(complete == KEYS_PER_BATCH);
    }
    let users = client.count("ALL").table(RT).await.unwrap();
    let applied = present.iter().filter(|p| **p).count();
    assert_eq!(
        users,
        1 + (applied * KEYS_PER_BATCH) as u64,
        "users of `rt`: the seed user and the keys of the {applied} applied batches"
    );
    present
}

/// Writes audited batches `first`, `first + stride`, … one at a time, until one fails or
/// `stop` is raised; counts acknowledged batches in `acked`. Returns each batch it sent with
/// whether it was acknowledged.
fn spawn_writer(
    client: Client,
    first: u64,
    stride: u64,
    acked: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<(u64, bool)>> {
    tokio::spawn(async move {
        let mut outcomes = Vec::new();
        let mut batch = first;
        while !*stop.borrow() {
            let ok = send_batch(&client, batch).await.is_ok();
            outcomes.push((batch, ok));
            if !ok {
                break;
            }
            acked.send_modify(|n| *n += 1);
            batch += stride;
        }
        outcomes
    })
}

/// Records `outcomes` in `ledger`; batch numbers skipped on the way were never sent, so their
/// outcome is "not acknowledged" (the audit then expects them absent or whole, i.e. absent).
fn record(ledger: &mut Ledger, outcomes: &[(u64, bool)]) {
    for &(batch, ok) in outcomes {
        let i = usize::try_from(batch).unwrap();
        if ledger.len() <= i {
            ledger.resize(i + 1, false);
        }
        ledger[i] = ok;
    }
}

/// The newest write-ahead log file of table `table` in `data_dir`.
fn newest_wal(data_dir: &Path, table: &str) -> PathBuf {
    let dir = data_dir.join("tables").join(table);
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| panic!("no write-ahead log in {}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// Visible at once
// ---------------------------------------------------------------------------------------------

fn value_of(portrait: &v1::Portrait, path: &str) -> Option<ValueKind> {
    portrait
        .values
        .iter()
        .find(|v| v.path == path)
        .and_then(|v| v.value.clone())
        .and_then(|v| v.kind)
}

#[tokio::test]
async fn writes_through_the_client_and_the_cli_are_visible_at_once() {
    let server = start(ServerOptions {
        args: vec!["--compact-after".into(), "0".into()],
        ..ServerOptions::demo(2_000)
    })
    .await;
    let url = server.url();
    let client = connect(&server, "users").await;
    let users = client.count("ALL").await.unwrap();
    assert_eq!(users, 2_000);

    // Through the client: every kind of the demo, and a new user.
    let k = key(7);
    let last_active = 1_795_600_000_000;
    let done = client
        .write()
        .set(&k, "interest/sports", true)
        .set(&k, "account/vip_level", 5)
        .set(&k, "demographic/gender", "unknown")
        .set(&k, "commerce/total_spend", value::decimal("12.5"))
        .set(&k, "activity/last_active", value::timestamp_ms(last_active))
        .set("newcomer-1", "risk/blacklist", true)
        .await
        .unwrap();
    assert_eq!((done.writes, done.new_users), (6, 1));
    let p = client.portrait(&k).await.unwrap();
    assert_eq!(
        value_of(&p, "interest/sports"),
        Some(ValueKind::FlagValue(true))
    );
    assert_eq!(
        value_of(&p, "account/vip_level"),
        Some(ValueKind::IntValue(5))
    );
    assert_eq!(
        value_of(&p, "demographic/gender"),
        Some(ValueKind::StringValue("unknown".into()))
    );
    assert_eq!(
        value_of(&p, "commerce/total_spend"),
        Some(ValueKind::DecimalValue("12.50".into()))
    );
    assert_eq!(
        value_of(&p, "activity/last_active"),
        Some(ValueKind::TimestampUnixMs(last_active))
    );
    assert_eq!(client.count("ALL").await.unwrap(), users + 1);
    assert!(
        client
            .contains("newcomer-1", "risk/blacklist AND NOT interest/sports")
            .await
            .unwrap()
    );
    assert!(
        client
            .contains(&k, "account/vip_level = 5 AND commerce/total_spend = 12.50")
            .await
            .unwrap()
    );
    let later = client
        .write()
        .clear(&k, "interest/sports")
        .set(&k, "account/vip_level", 2)
        .await
        .unwrap();
    assert!(later.seq > done.seq, "{later:?} after {done:?}");
    assert!(!client.contains(&k, "interest/sports").await.unwrap());
    assert!(client.contains(&k, "account/vip_level = 2").await.unwrap());

    // Through the command line.
    let k2 = key(8);
    let set = json(
        &url,
        &[
            "set",
            &k2,
            "interest/sports=true",
            "account/vip_level=4",
            "commerce/total_spend=99.99",
            "activity/last_active=2026-11-20T10:00:00+08:00",
            "demographic/gender=female",
        ],
    )
    .await;
    assert_eq!(set["writes"], 5, "{set}");
    assert_eq!(set["new_users"], 0, "{set}");
    let p = json(&url, &["portrait", &k2]).await;
    let values = &p["values"];
    assert_eq!(values["interest/sports"], true, "{p}");
    assert_eq!(values["account/vip_level"], 4, "{p}");
    assert_eq!(values["commerce/total_spend"], "99.99", "{p}");
    // 2026-11-20T02:00:00Z
    assert_eq!(values["activity/last_active"], 1_795_140_000_000i64, "{p}");
    assert_eq!(values["demographic/gender"], "female", "{p}");

    let cleared = json(
        &url,
        &["clear", &k2, "interest/sports", "account/vip_level"],
    )
    .await;
    assert_eq!(cleared["writes"], 2, "{cleared}");
    assert!(!client.contains(&k2, "interest/sports").await.unwrap());
    assert!(
        !client
            .contains(&k2, "account/vip_level >= 0")
            .await
            .unwrap()
    );
    // A flag set to `false` is cleared.
    json(&url, &["set", &k, "risk/blacklist=true"]).await;
    assert!(client.contains(&k, "risk/blacklist").await.unwrap());
    json(&url, &["set", &k, "risk/blacklist=false"]).await;
    assert!(!client.contains(&k, "risk/blacklist").await.unwrap());

    // The human output is a table.
    let out = portrait(&url, &["set", &k, "account/vip_level=1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("KEY  "), "{text}");
    assert!(text.contains(&k), "{text}");

    // A file of writes, with a clear (empty value) and a new user.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("writes.tsv");
    let k3 = key(9);
    std::fs::write(
        &file,
        format!(
            "key\tpath\tvalue\n{k3}\tinterest/sports\ttrue\n{k3}\taccount/vip_level\t3\n\n\
             {k3}\tdemographic/gender\t\nnewcomer-2\tcommerce/total_spend\t1.5\n\
             newcomer-2\tactivity/last_active\t2026-11-25\n"
        ),
    )
    .unwrap();
    let written = json(
        &url,
        &["write", "--file", file.to_str().unwrap(), "--batch", "2"],
    )
    .await;
    assert_eq!(written["writes"], 5, "{written}");
    assert_eq!(written["batches"], 3, "{written}");
    assert_eq!(written["new_users"], 1, "{written}");
    assert!(
        client
            .contains(&k3, "interest/sports AND account/vip_level = 3")
            .await
            .unwrap()
    );
    assert!(
        !client
            .contains(&k3, "demographic/gender IN ('female', 'male', 'unknown')")
            .await
            .unwrap()
    );
    assert!(
        client
            .contains(
                "newcomer-2",
                "commerce/total_spend = 1.50 AND activity/last_active = DATE '2026-11-25'"
            )
            .await
            .unwrap()
    );

    // Events: appends add up, through the client and the command line.
    let bought = "did(purchase, DATE '2026-11-25' TO DATE '2026-11-25')";
    let at = 1_795_600_000_000; // 2026-11-25T10:13:20Z
    client
        .write()
        .append("newcomer-2", "purchase", at, 2)
        .await
        .unwrap();
    assert!(
        client
            .contains("newcomer-2", format!("{bought} >= 2"))
            .await
            .unwrap()
    );
    let appended = json(
        &url,
        &["set", "newcomer-2", "purchase=3@2026-11-25T18:00:00+08:00"],
    )
    .await;
    assert_eq!(appended["writes"], 1, "{appended}");
    assert!(
        client
            .contains("newcomer-2", format!("{bought} >= 5"))
            .await
            .unwrap()
    );
    assert!(
        !client
            .contains("newcomer-2", format!("{bought} >= 6"))
            .await
            .unwrap()
    );

    // Refusals: nothing is sent, or the server refuses the whole batch.
    let users_now = client.count("ALL").await.unwrap();
    let message = fails(&url, &["set", &k, "interest/sportz=true"], 1).await;
    assert!(
        message.contains("did you mean `interest/sports`"),
        "{message}"
    );
    let message = fails(&url, &["set", &k, "account/vip_level=lots"], 1).await;
    assert!(message.contains("is an int"), "{message}");
    let message = fails(&url, &["set", "newcomer-3", "login=true"], 1).await;
    assert!(message.contains("`login` is an event"), "{message}");
    fails(&url, &["set", &k], 2).await;
    fails(&url, &["set", &k, "account/vip_level"], 2).await;
    let bad = dir.path().join("bad.tsv");
    std::fs::write(
        &bad,
        "newcomer-4\tinterest/sports\ttrue\nnewcomer-4\taccount/vip_level\t1\nnewcomer-4\taccount/vip_level\tmany\n",
    )
    .unwrap();
    let message = fails(&url, &["write", "--file", bad.to_str().unwrap()], 1).await;
    assert!(message.contains("bad.tsv, line 3"), "{message}");
    assert!(message.contains("is an int"), "{message}");
    assert_eq!(
        client.count("ALL").await.unwrap(),
        users_now,
        "a refused command added users"
    );

    // Compaction folds the delta into segments; the answers stay the same.
    let delta = json(&url, &["admin", "delta"]).await;
    assert!(delta["pending"].as_u64().unwrap() > 0, "{delta}");
    assert_eq!(delta["table"], "users");
    let logged = delta["wal_bytes"].as_u64().unwrap();
    let probes = [
        "interest/sports",
        "risk/blacklist",
        "account/vip_level >= 2",
        "commerce/total_spend > 10",
        "ALL",
    ];
    let mut before = Vec::new();
    for probe in probes {
        before.push(client.count(probe).await.unwrap());
    }
    let compacted = json(&url, &["admin", "compact"]).await;
    assert!(compacted["fields"].as_u64().unwrap() >= 5, "{compacted}");
    assert!(compacted["changes"].as_u64().unwrap() > 0, "{compacted}");
    let delta = json(&url, &["admin", "delta"]).await;
    assert_eq!(delta["pending"], 0, "{delta}");
    // The log rotated: the new file holds nothing yet.
    assert!(
        delta["wal_bytes"].as_u64().unwrap() < logged,
        "{delta}, {logged} bytes before"
    );
    for (probe, want) in probes.iter().zip(before) {
        assert_eq!(client.count(*probe).await.unwrap(), want, "{probe}");
    }
    let p = client.portrait(&k2).await.unwrap();
    assert_eq!(
        value_of(&p, "commerce/total_spend"),
        Some(ValueKind::DecimalValue("99.99".into()))
    );
    let out = portrait(&url, &["admin", "delta"]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TABLE  PENDING"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

/// What a refused batch must leave unchanged.
async fn state(client: &Client) -> (u64, u64, u64) {
    (
        client.count("ALL").await.unwrap(),
        client.count("hit").await.unwrap(),
        client.delta_stats().await.unwrap().pending,
    )
}

#[tokio::test]
async fn bad_batches_are_refused_whole_with_the_right_code() {
    let server = start(ServerOptions {
        config: Some("[limits]\nmax_write_batch = 50\n".into()),
        ..ServerOptions::default()
    })
    .await;
    let client = connect(&server, RT).await;
    create_rt(&client).await;
    load_csv(
        &client,
        RT,
        LoadFormat::Events,
        "key,event,time\nseed,login,2026-11-25\n",
        "",
    )
    .await;
    client.create_table("devices", KeyKind::U64).await.unwrap();
    load_csv(
        &client,
        "devices",
        LoadFormat::Wide,
        "id,vip\n1,true\n2,false\n",
        "[fields.vip]\nkind = \"flag\"\n",
    )
    .await;
    let before = state(&client).await;
    // Every refused batch starts with a good write that must not be applied either.
    let good = || client.write().set("fresh", "hit", true);

    match good().set("seed", "hitt", true).await {
        Err(Error::NotFound(message)) => {
            assert!(message.contains("did you mean `hit`"), "{message}")
        }
        other => panic!("unknown field: {other:?}"),
    }
    match good().set("seed", "n", "seven").await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("write 1:"), "{message}");
            assert!(message.contains("`n`"), "{message}");
        }
        other => panic!("wrong value kind: {other:?}"),
    }
    match good().set("seed", "n", value::decimal("7.5")).await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("write 1:"), "{message}")
        }
        other => panic!("a decimal for an int: {other:?}"),
    }
    match good().set("seed", "login", true).await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("event field"), "{message}")
        }
        other => panic!("a value for an event field: {other:?}"),
    }
    match good().append("seed", "n", 1_795_600_000_000, 1).await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(
                message.contains("`n`") && message.contains("event"),
                "{message}"
            )
        }
        other => panic!("an append to an int field: {other:?}"),
    }
    match good()
        .extend([v1::FieldWrite {
            key: "seed".into(),
            path: "hit".into(),
            change: None,
        }])
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.starts_with("write 1: no change"), "{message}")
        }
        other => panic!("a write without a change: {other:?}"),
    }
    let mut oversized = client.write();
    for i in 0..51 {
        oversized = oversized.set(format!("many-{i}"), "hit", true);
    }
    match oversized.await {
        Err(Error::ResourceExhausted(message)) => {
            assert!(
                message.contains("51") && message.contains("limit of 50"),
                "{message}"
            )
        }
        other => panic!("an oversized batch: {other:?}"),
    }
    assert_eq!(state(&client).await, before, "a refused batch changed `rt`");

    // Keys of the wrong kind for a table keyed by u64.
    let devices = connect(&server, "devices").await;
    let users = devices.count("ALL").await.unwrap();
    match devices
        .write()
        .set("3", "vip", true)
        .set("device-4", "vip", true)
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(
                message.starts_with("write 1: key \"device-4\""),
                "{message}"
            )
        }
        other => panic!("a key of the wrong kind: {other:?}"),
    }
    assert_eq!(devices.count("ALL").await.unwrap(), users);
    assert_eq!(devices.count("vip").await.unwrap(), 1);
    let done = devices.write().set("3", "vip", true).await.unwrap();
    assert_eq!(done.new_users, 1);
    assert_eq!(devices.count("vip").await.unwrap(), 2);

    // At the limit, a batch goes through.
    let mut full = client.write();
    for i in 0..50 {
        full = full.set(format!("many-{i}"), "hit", true);
    }
    let done = full.await.unwrap();
    assert_eq!((done.writes, done.new_users), (50, 50));
    assert_eq!(client.count("hit").await.unwrap(), before.1 + 50);
}

// ---------------------------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill_rounds() {
    const ROUNDS: usize = 10;
    let mut rng = Rng(seed());
    // A background compaction starts every ~8 batches.
    let mut server = start_with(&["--compact-after", "300"]).await;
    create_rt(&connect(&server, RT).await).await;
    let mut ledger: Ledger = Vec::new();
    let mut explicit_compactions = 0;
    for round in 0..ROUNDS {
        let client = connect(&server, RT).await;
        let target = 3 + rng.below(25);
        let jitter = Duration::from_micros(rng.below(5_000));
        let compacting = rng.below(2) == 0;

        // Two writers, so that batches also share group commits.
        let (acked_tx, mut acked) = watch::channel(0u64);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let first = ledger.len() as u64;
        let writers = [0, 1].map(|w| {
            spawn_writer(
                client.clone(),
                first + w,
                2,
                acked_tx.clone(),
                stop_rx.clone(),
            )
        });
        drop(acked_tx);
        // In some rounds a client also asks for compactions, until the server goes away.
        let compactor = compacting.then(|| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while let Ok(summary) = client.compact().await {
                    done += u32::from(summary.fields > 0);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                done
            })
        });
        // The writers stop early only if a batch fails, which the assertion below reports.
        let _ = acked.wait_for(|n| *n >= target).await;
        tokio::time::sleep(jitter).await;
        server = stop(server, Stop::Kill).await;
        let mut acked_now = 0;
        for writer in writers {
            let outcomes = writer.await.unwrap();
            acked_now += outcomes.iter().filter(|(_, ok)| *ok).count();
            record(&mut ledger, &outcomes);
        }
        if let Some(compactor) = compactor {
            explicit_compactions += compactor.await.unwrap();
        }
        assert!(
            acked_now as u64 >= target,
            "round {round}: only {acked_now} of {target} batches acknowledged before the kill"
        );

        server = resume(server).await;
        let present = audit(&connect(&server, RT).await, &ledger).await;
        eprintln!(
            "realtime: round {round}: {} batches sent, {} there, kill after {target} + {jitter:?}",
            ledger.len(),
            present.iter().filter(|p| **p).count()
        );
    }
    // Compactions ran: each rotates the log to a new file.
    let delta = connect(&server, RT).await.delta_stats().await.unwrap();
    assert!(
        delta.wal_file > 0,
        "no compaction ran in {ROUNDS} rounds ({explicit_compactions} on request): {delta:?}"
    );
}

#[tokio::test]
async fn a_torn_log_tail_is_truncated_with_a_warning() {
    let mut server = start_with(&["--compact-after", "0"]).await;
    let client = connect(&server, RT).await;
    create_rt(&client).await;
    let mut ledger = Ledger::new();
    for b in 0..5 {
        send_batch(&client, b).await.unwrap();
        ledger.push(true);
    }
    server = stop(server, Stop::Graceful).await;
    let wal = newest_wal(&server.data_dir(), RT);
    let len = std::fs::metadata(&wal).unwrap().len();
    // A record header announcing 64 bytes, a checksum that cannot match, and 10 bytes of body.
    let mut torn = 64u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xab; 8]);
    torn.extend_from_slice(&[0x5a; 10]);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&torn).unwrap();
    }

    server = resume(server).await;
    let log = server.stderr();
    assert!(
        log.contains("WARN") && log.contains("truncating a torn write-ahead log tail"),
        "no warning about the torn tail:\n{log}"
    );
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        len,
        "the tail was not cut off"
    );
    let client = connect(&server, RT).await;
    audit(&client, &ledger).await;
    send_batch(&client, 5).await.unwrap();
    ledger.push(true);

    server = stop(server, Stop::Kill).await;
    server = resume(server).await;
    assert!(
        !server.stderr().contains("torn"),
        "the truncation did not last:\n{}",
        server.stderr()
    );
    audit(&connect(&server, RT).await, &ledger).await;
}

// ---------------------------------------------------------------------------------------------
// Backup and restore
// ---------------------------------------------------------------------------------------------

/// Runs `portraitd ARGS…` expecting it to exit by itself; returns its output.
async fn portraitd_exits(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let child = Command::new(&binaries().portraitd)
            .args(&args)
            .env_remove("PORTRAIT_CONFIG")
            .env_remove("PORTRAIT_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portraitd");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let out = child.wait_with_output();
            let _ = tx.send(());
            out
        });
        if rx.recv_timeout(portrait_e2e::START_TIMEOUT).is_err() {
            let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
            // SAFETY: `kill` has no memory-safety preconditions; the waiter has not reaped the
            // child, so `pid` is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("portraitd {args:?} did not exit by itself");
        }
        waiter.join().unwrap().expect("portraitd's output")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_into_a_new_server() {
    let server = start_with(&["--compact-after", "200"]).await;
    let client = connect(&server, RT).await;
    create_rt(&client).await;

    let (acked_tx, mut acked) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = spawn_writer(client.clone(), 0, 1, acked_tx, stop_rx);
    acked.wait_for(|n| *n >= 5).await.unwrap();
    // Batches acknowledged before the backup starts must be in it.
    let before_backup = *acked.borrow();

    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("monday");
    let dir_text = dir.to_str().unwrap();
    let stats = json(&server.url(), &["admin", "backup", dir_text]).await;
    assert!(stats["files"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["linked"].as_u64().unwrap() <= stats["files"].as_u64().unwrap(),
        "{stats}"
    );
    assert_eq!(stats["dir"], dir_text);
    // Writes went on during the backup and go on after it.
    let after_backup = *acked.borrow();
    acked.wait_for(|n| *n >= after_backup + 3).await.unwrap();
    stop_tx.send(true).unwrap();
    let mut ledger = Ledger::new();
    record(&mut ledger, &writer.await.unwrap());
    assert!(ledger.iter().all(|ok| *ok), "a write failed: {ledger:?}");

    // A second backup into the same directory is refused.
    let message = fails(&server.url(), &["admin", "backup", dir_text], 1).await;
    assert!(message.contains("not empty"), "{message}");

    let restored = start(ServerOptions {
        args: vec!["--restore".into(), dir_text.to_owned()],
        ..ServerOptions::default()
    })
    .await;
    assert!(
        restored.stderr().contains("backup restored"),
        "{}",
        restored.stderr()
    );
    // The backup holds the batches acknowledged before it began, and is one instant: a
    // prefix of the batches, each whole.
    let restored_client = connect(&restored, RT).await;
    let in_backup: Ledger = (0..ledger.len() as u64)
        .map(|b| b < before_backup)
        .collect();
    let present = audit(&restored_client, &in_backup).await;
    let there = present.iter().take_while(|p| **p).count();
    assert!(
        present[there..].iter().all(|p| !*p),
        "the backup is not one instant: {present:?}"
    );
    assert!(there as u64 >= before_backup);
    // The restored server takes writes of its own.
    send_batch(&restored_client, ledger.len() as u64 + 1)
        .await
        .unwrap();
    // And the original has everything.
    audit(&client, &ledger).await;

    // `--restore` refuses a data directory that is not empty, and leaves it alone.
    let occupied = tempfile::tempdir().unwrap();
    std::fs::write(occupied.path().join("keep.txt"), "mine").unwrap();
    let run = |data: &Path, backup: &str| {
        vec![
            "--data-dir".to_owned(),
            data.to_str().unwrap().to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--restore".to_owned(),
            backup.to_owned(),
        ]
    };
    let out = portraitd_exits(run(occupied.path(), dir_text)).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("cannot restore the backup") && message.contains("is not empty"),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(occupied.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep.txt"], "the data directory was touched");
    // And a directory that is not a backup.
    let fresh = tempfile::tempdir().unwrap();
    let out = portraitd_exits(run(
        &fresh.path().join("data"),
        occupied.path().to_str().unwrap(),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a complete Portrait backup"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// New users and coverage under real-time changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_key_written_twice_in_a_batch_is_one_new_user() {
    let server = start(ServerOptions::default()).await;
    let client = connect(&server, RT).await;
    create_rt(&client).await;
    let done = client
        .write()
        .set("fresh", "hit", true)
        .set("fresh", "n", 1)
        .await
        .unwrap();
    assert_eq!(client.count("ALL").await.unwrap(), 2);
    assert_eq!((done.writes, done.new_users), (2, 1));
}

/// `!=` on a field every stored user has must still leave out a user whose value a real-time
/// write cleared.
#[tokio::test]
async fn not_equal_leaves_out_a_value_cleared_in_real_time() {
    let server = start(ServerOptions::default()).await;
    let client = connect(&server, RT).await;
    client.create_table(RT, KeyKind::String).await.unwrap();
    load_csv(
        &client,
        RT,
        LoadFormat::Wide,
        "key,city\na,bj\nb,sh\n",
        "[fields.city]\nkind = \"enum\"\n",
    )
    .await;
    assert_eq!(client.count("city != 'x'").await.unwrap(), 2);
    client.write().clear("a", "city").await.unwrap();
    assert!(!client.contains("a", "city IN ('bj', 'sh')").await.unwrap());
    assert_eq!(client.count("city != 'x'").await.unwrap(), 1);
}
