//! What the read-only tests share: one `portraitd --demo` over [`DEMO_USERS`] users, and the same
//! data set loaded into an in-process engine database, whose answers are the expected ones.
//!
//! The demo data set is `portrait-datagen`'s generator with seed [`DEMO_SEED`], loaded by
//! `portrait_datagen::load::load` under the label [`DEMO_LABEL`] into table `users` with string
//! keys (see `server/src/demo.rs`); doing the same here gives the same users, ids and values, so
//! every answer of the server can be compared with the engine's own.

use std::sync::{Arc, OnceLock};

use portrait_client::{Client, RetryPolicy, proto as v1};
use portrait_datagen::Generator;
use portrait_e2e::{Cleanup, Server, ServerOptions, at_exit};
use portrait_engine::{Database, KeyKind, TableSnapshot, Value};

/// Users of the shared demo server.
pub const DEMO_USERS: u32 = 20_000;
/// Seed of the demo data set, as documented in `server/src/demo.rs`.
pub const DEMO_SEED: u64 = 42;
/// Version label of the demo load: the generator's reference day.
pub const DEMO_LABEL: &str = "2026-11-25";
/// The demo table.
pub const TABLE: &str = "users";

/// The shared demo server, started by the first test that asks; it runs until the test process
/// exits. Tests that stop, restart or reconfigure a server start their own.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<&'static Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // Load the expected data while the server loads its demo.
        let expected = std::thread::spawn(|| {
            expected();
        });
        let server = Server::start(ServerOptions::demo(DEMO_USERS)).leak();
        expected.join().expect("loading the expected data failed");
        server
    })
}

/// The engine's view of the demo data set, loaded in-process.
pub fn expected() -> Arc<TableSnapshot> {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("portrait-e2e-expected-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        at_exit(Cleanup::RemoveDir(dir.clone()));
        let db = Database::open(&dir).expect("open the expected database");
        let table = db
            .create_table(TABLE, KeyKind::Str)
            .expect("create the table");
        let generator = Generator::new(DEMO_SEED, DEMO_USERS);
        portrait_datagen::load::load(&table, &generator, DEMO_LABEL, |_| {})
            .expect("load the demo data set");
        db
    })
    .table(TABLE)
    .expect("the expected table")
    .snapshot()
}

/// A client of the shared server that does not retry, so that every failure shows.
pub async fn client() -> Client {
    Client::builder(server().url())
        .retry_policy(RetryPolicy::none())
        .connect()
        .await
        .expect("connect to the shared server")
}

/// The key of generated user `i` (the generator's key format, e.g. `u0000000042`).
pub fn key(i: u32) -> String {
    portrait_datagen::key(i)
}

/// An engine value as the wire contract describes it, written independently of the server's
/// conversion: decimals as exact strings with `scale` digits after the point, timestamps in
/// epoch milliseconds, flags as `true`.
pub fn wire_value(value: &Value) -> v1::Value {
    use v1::value::Kind;
    let kind = match value {
        Value::Flag => Kind::FlagValue(true),
        Value::Str(s) => Kind::StringValue(s.clone()),
        Value::Strs(values) => Kind::SetValue(v1::StringSet {
            values: values.clone(),
        }),
        Value::Int(i) => Kind::IntValue(*i),
        Value::Decimal { units, scale } => Kind::DecimalValue(decimal(i128::from(*units), *scale)),
        Value::Timestamp(ms) => Kind::TimestampUnixMs(*ms),
    };
    v1::Value { kind: Some(kind) }
}

/// `units × 10^-scale` in plain decimal notation (`1250, 2` → `12.50`).
pub fn decimal(units: i128, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The portrait of `key` the engine gives, as the server must send it (ordered by path).
pub fn expected_portrait(snap: &TableSnapshot, key: &str) -> v1::Portrait {
    let mut values = snap.portrait(key).expect("a portrait of a known user");
    values.sort_by(|a, b| a.0.cmp(&b.0));
    v1::Portrait {
        key: key.to_owned(),
        values: values
            .iter()
            .map(|(path, value)| v1::FieldValue {
                path: path.clone(),
                value: Some(wire_value(value)),
            })
            .collect(),
    }
}

/// The number of users the engine counts for the text expression `expr`.
pub fn expected_count(snap: &TableSnapshot, expr: &str) -> u64 {
    snap.crowd_text(expr)
        .and_then(|c| c.count())
        .unwrap_or_else(|e| panic!("the engine cannot count {expr:?}: {e}"))
}

/// The keys of the users matching `expr`, in id order, as the engine lists them.
pub fn expected_members(snap: &TableSnapshot, expr: &str) -> Vec<String> {
    let crowd = snap
        .crowd_text(expr)
        .unwrap_or_else(|e| panic!("the engine cannot plan {expr:?}: {e}"));
    let bitmap = crowd.bitmap().expect("the crowd's bitmap");
    bitmap
        .iter()
        .map(|id| {
            snap.key_of(id)
                .expect("key lookup")
                .expect("every member has a key")
                .to_string()
        })
        .collect()
}

/// Expressions over the demo fields, from trivial to compound, each with a non-trivial answer.
pub const EXPRESSIONS: &[&str] = &[
    "ALL",
    "NOT ALL",
    "device/ios",
    "demographic/gender = 'female'",
    "demographic/age >= 30 AND account/vip_level >= 3",
    "demographic/age BETWEEN 18 AND 24 OR geo/province IN ('guangdong', 'zhejiang')",
    "device/android XOR marketing/push_opt_in",
    "NOT lifecycle/churned AND commerce/total_spend > 100.50",
    "account/registered >= DATE '2026-01-01' AND activity/last_active < DATE '2026-11-01'",
    "acquisition/channel != 'organic' AND (device/ios OR device/android)",
    "KEYS('u0000000001', 'u0000000002', 'u0000019999', 'nobody')",
];

/// Rounds away floating-point noise for comparing shares and TGI computed on two sides.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn decimals_print_exactly() {
    assert_eq!(decimal(1250, 2), "12.50");
    assert_eq!(decimal(-5, 2), "-0.05");
    assert_eq!(decimal(0, 2), "0.00");
    assert_eq!(decimal(7, 0), "7");
    assert_eq!(decimal(-123_456, 3), "-123.456");
}
