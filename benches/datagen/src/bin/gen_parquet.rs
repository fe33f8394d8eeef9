//! Writes the generated dataset as Parquet files (see `portrait_datagen::parquet_files`).
//!
//! `gen-parquet [--users N] [--seed S] --out DIR` (defaults: 1 000 000 users, seed 42).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use portrait_datagen::{DEFAULT_USERS, Generator, parquet_files};

const USAGE: &str = "usage: gen-parquet [--users N] [--seed S] --out DIR";

fn parse_args() -> Result<(u32, u64, PathBuf), String> {
    let (mut users, mut seed, mut out) = (DEFAULT_USERS, 42u64, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(|v| v.replace('_', ""))
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--users" => {
                let v = value("--users")?;
                users = v.parse().map_err(|_| format!("--users {v}: not a count"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?;
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok((users, seed, out))
}

fn main() -> ExitCode {
    let (users, seed, out) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let generator = Generator::new(seed, users);
    match parquet_files::write_all(&generator, &out) {
        Ok(files) => {
            for f in files {
                println!(
                    "{}: {} rows, {:.1} MiB",
                    f.path.display(),
                    f.rows,
                    f.bytes as f64 / (1 << 20) as f64
                );
            }
            println!(
                "{users} users (seed {seed}) written in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-parquet: writing {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
