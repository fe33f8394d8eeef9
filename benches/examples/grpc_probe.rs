//! Times lone gRPC calls against a running `portraitd`: one call at a time from a current-thread
//! client, as a program making single requests would, with the median, p10 and p90 of `N` calls
//! (200) after 3 warm-up calls, and `GAP_US` microseconds of sleep between calls (0):
//!
//! `cargo run --release -p portrait-benches --example grpc_probe -- http://127.0.0.1:7070 \
//!   'portrait:u0000123457' 'contains:u0000765433:vip' 'count:interest/sports AND vip' \
//!   'dist:demographic/age@18,25,35,45,60:interest/sports' \
//!   'freq:purchase@2026-10-27,2026-11-25:interest/sports'`
//!
//! Unlike the `grpc` bench, whose server runs in the benchmark's own process, this measures a
//! server started separately (its own session and scheduling group, its own configuration).
//! A gap longer than the server's `--idle-poll-us` window shows what a call costs after the
//! cores went idle.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portrait_client::Client;

const WARM_UP: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(address) = args.next() else {
        bail!(
            "usage: grpc_probe ADDRESS (count:EXPR | portrait:KEY | contains:KEY:EXPR | \
             dist:FIELD@BOUNDS:EXPR | freq:EVENT@FROM,TO:EXPR)..."
        );
    };
    let runs = env_or("N", 200usize).max(1);
    let gap = Duration::from_micros(env_or("GAP_US", 0u64));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt
        .block_on(Client::builder(address.as_str()).no_timeout().connect())
        .with_context(|| format!("connecting to {address}"))?;
    for call in args {
        let mut micros = Vec::with_capacity(runs);
        for i in 0..WARM_UP + runs {
            let t = Instant::now();
            if let Some(expr) = call.strip_prefix("count:") {
                rt.block_on(client.count(expr).send())?;
            } else if let Some(key) = call.strip_prefix("portrait:") {
                rt.block_on(client.portrait(key).send())?;
            } else if let Some((key, expr)) = call
                .strip_prefix("contains:")
                .and_then(|r| r.split_once(':'))
            {
                rt.block_on(client.contains(key, expr).send())?;
            } else if let Some((field, expr)) =
                call.strip_prefix("dist:").and_then(|r| r.split_once(':'))
            {
                let (field, bounds) = field.split_once('@').unwrap_or((field, ""));
                let bounds: Vec<i64> = bounds.split(',').filter_map(|b| b.parse().ok()).collect();
                rt.block_on(client.distribution(expr, field).bounds(bounds).send())?;
            } else if let Some((event, expr)) =
                call.strip_prefix("freq:").and_then(|r| r.split_once(':'))
            {
                let Some((event, (from, to))) = event
                    .split_once('@')
                    .and_then(|(e, days)| Some((e, days.split_once(',')?)))
                else {
                    bail!("freq: takes EVENT@FROM,TO:EXPR, got {call:?}");
                };
                rt.block_on(client.frequency(event, from, to).crowd(expr).send())?;
            } else {
                bail!(
                    "unknown call {call:?}: count:EXPR, portrait:KEY, contains:KEY:EXPR, \
                     dist:FIELD@B1,B2,...:EXPR or freq:EVENT@FROM,TO:EXPR"
                );
            }
            if i >= WARM_UP {
                micros.push(t.elapsed().as_secs_f64() * 1e6);
            }
            std::thread::sleep(gap);
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: usize| micros[(micros.len() * q / 100).min(micros.len() - 1)];
        println!(
            "{:9.1} µs median  {:9.1} p10  {:9.1} p90  {call}",
            at(50),
            at(10),
            at(90)
        );
    }
    Ok(())
}
