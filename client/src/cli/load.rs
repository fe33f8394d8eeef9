//! `portrait load`, `portrait versions` and `portrait drop-version`.
//!
//! `load` streams the files to the server (one call, one version) with a progress bar on stderr
//! (bytes sent and their rate; then the server's import), or with `--server-side` asks the
//! server to read them from its own file system. The summary goes to stdout, as text or, with
//! `--json`, as one JSON object.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use portrait_client::Client;
use portrait_client::proto as v1;
use portrait_client::request::LoadFormat;
use serde_json::json;

use super::output::group_digits;

/// The shape of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per user, one column per field.
    Wide,
    /// `(key, tag)` or `(key, field, value)` rows.
    Long,
    /// `(key, event, timestamp or day[, count])` rows.
    Events,
}

/// The encoding of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Type {
    Csv,
    Tsv,
    Parquet,
}

/// Arguments of `portrait load`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LoadArgs {
    /// The shape of the files.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The key column [default: key, user, user_id or id].
    #[arg(long, value_name = "COL")]
    pub key: Option<String>,
    /// A mapping file (TOML): renames, path prefix, kinds, descriptions, skipped columns.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// The version label [default: today's date, UTC].
    #[arg(long = "version", id = "label", value_name = "LABEL")]
    pub version: Option<String>,
    /// Skip rows that do not fit (and count them) instead of failing the load.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// The file type, instead of each file's extension.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub file_type: Option<Type>,
    /// Paths on the server's file system: the server reads the files itself.
    #[arg(long)]
    pub server_side: bool,
    /// The files, loaded together as one version.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

fn wire_format(f: Format) -> LoadFormat {
    match f {
        Format::Wide => LoadFormat::Wide,
        Format::Long => LoadFormat::Long,
        Format::Events => LoadFormat::Events,
    }
}

fn wire_type(t: Option<Type>) -> v1::FileType {
    match t {
        None => v1::FileType::Unspecified,
        Some(Type::Csv) => v1::FileType::Csv,
        Some(Type::Tsv) => v1::FileType::Tsv,
        Some(Type::Parquet) => v1::FileType::Parquet,
    }
}

/// Runs `portrait load`.
pub async fn load(client: &Client, args: &LoadArgs, json: bool) -> anyhow::Result<()> {
    let mapping = match &args.mapping {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the mapping {}", p.display()))?,
        None => String::new(),
    };
    let started = Instant::now();
    let response = if args.server_side {
        let paths = args.files.iter().map(|p| p.display().to_string());
        let mut request = client
            .load_path(wire_format(args.format), paths)
            .file_type(wire_type(args.file_type))
            .mapping(&mapping)
            .skip_bad_rows(args.skip_bad_rows)
            // A server-side load of a large file takes as long as it takes.
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(k) = &args.key {
            request = request.key_column(k);
        }
        if let Some(v) = &args.version {
            request = request.version(v);
        }
        if client.default_table() != portrait_client::DEFAULT_TABLE {
            request = request.table(client.default_table());
        }
        let bar = spinner(json);
        bar.set_message("loading on the server");
        let r = request.await;
        bar.finish_and_clear();
        r?
    } else {
        let mut total = 0u64;
        for f in &args.files {
            total += std::fs::metadata(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .len();
        }
        let mut request = client
            .load(wire_format(args.format))
            .file_type(wire_type(args.file_type))
            .mapping(mapping)
            .skip_bad_rows(args.skip_bad_rows);
        if let Some(k) = &args.key {
            request = request.key_column(k);
        }
        if let Some(v) = &args.version {
            request = request.version(v);
        }
        let bar = ProgressBar::with_draw_target(Some(total), draw_target(json));
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let sent = bar.clone();
        let r = request
            .send_files(args.files.clone(), move |bytes| {
                sent.set_position(bytes);
                if bytes >= total {
                    sent.set_message("sent; loading on the server");
                }
            })
            .await;
        bar.finish_and_clear();
        r?
    };
    let mut out = std::io::stdout().lock();
    let text = if json {
        format!("{}\n", summary_json(&response))
    } else {
        summary_human(&response, args.files.len(), started.elapsed())
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Where progress bars draw: stderr when it is a terminal and the output is not JSON, nowhere
/// otherwise.
pub fn draw_target(json: bool) -> ProgressDrawTarget {
    if json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

fn spinner(json: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target(json));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// The JSON summary of a load.
pub fn summary_json(r: &v1::LoadResponse) -> serde_json::Value {
    json!({
        "version": r.version,
        "rows": r.rows,
        "skipped_rows": r.skipped.iter().map(|s| s.rows).sum::<u64>(),
        "skipped": r.skipped.iter().map(|s| json!({
            "reason": s.reason,
            "rows": s.rows,
            "first_file": s.first_file,
            "first_row": s.first_row,
        })).collect::<Vec<_>>(),
        "fields": r.fields,
        "new_users": r.new_users,
        "users": r.users,
        "bytes_read": r.bytes_read,
        "bytes_written": r.bytes_written,
        "server_us": r.elapsed_us,
        "rows_per_second": rate(r.rows, Duration::from_micros(r.elapsed_us)),
    })
}

fn rate(n: u64, d: Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 { (n as f64 / s) as u64 } else { 0 }
}

/// The text summary of a load.
pub fn summary_human(r: &v1::LoadResponse, files: usize, elapsed: Duration) -> String {
    let mut s = format!(
        "loaded version {} of {} field{} from {} file{}: {} rows in {:.1} s ({} rows/s on the \
         server)\n{} new users, {} users in all, {} bytes written\n",
        r.version,
        r.fields.len(),
        if r.fields.len() == 1 { "" } else { "s" },
        files,
        if files == 1 { "" } else { "s" },
        group_digits(r.rows),
        elapsed.as_secs_f64(),
        group_digits(rate(r.rows, Duration::from_micros(r.elapsed_us))),
        group_digits(r.new_users),
        group_digits(r.users),
        group_digits(r.bytes_written),
    );
    for k in &r.skipped {
        s.push_str(&format!(
            "skipped {} rows: {} (first: {} row {})\n",
            group_digits(k.rows),
            k.reason,
            k.first_file,
            k.first_row
        ));
    }
    s
}

/// Runs `portrait versions PATH`.
pub async fn versions(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let versions = client.versions(path).await?;
    let text = if json {
        let rows: Vec<_> = versions
            .iter()
            .map(|v| {
                json!({
                    "label": v.label,
                    "created_unix_ms": v.created_unix_ms,
                    "users": v.users,
                    "distinct_values": v.distinct_values,
                    "bytes": v.bytes,
                })
            })
            .collect();
        format!("{}\n", json!({ "path": path, "versions": rows }))
    } else {
        let mut rows = vec![[
            "label".to_owned(),
            "created (UTC)".to_owned(),
            "users".to_owned(),
            "distinct".to_owned(),
            "bytes".to_owned(),
        ]];
        for v in &versions {
            rows.push([
                v.label.clone(),
                utc(v.created_unix_ms),
                group_digits(v.users),
                group_digits(v.distinct_values),
                group_digits(v.bytes),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, x)| {
                    if c >= 2 {
                        format!("{x:>w$}", w = widths[c])
                    } else {
                        format!("{x:<w$}", w = widths[c])
                    }
                })
                .collect();
            s.push_str(line.join("  ").trim_end());
            s.push('\n');
        }
        s
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Runs `portrait drop-version PATH LABEL`.
pub async fn drop_version(
    client: &Client,
    path: &str,
    label: &str,
    json: bool,
) -> anyhow::Result<()> {
    client.drop_version(path, label).await?;
    let text = if json {
        format!("{}\n", json!({ "path": path, "dropped": label }))
    } else {
        format!("dropped version {label} of {path}\n")
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix millisecond time, UTC.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::args::{Cli, Command};

    #[test]
    fn load_arguments_parse() {
        let cli = Cli::try_parse_from([
            "portrait",
            "load",
            "--format",
            "long",
            "--key",
            "uid",
            "--version",
            "v1",
            "--skip-bad-rows",
            "a.csv",
            "b.parquet",
        ])
        .unwrap();
        let Command::Load(args) = cli.command else {
            panic!("not a load")
        };
        assert_eq!(args.format, Format::Long);
        assert_eq!(args.key.as_deref(), Some("uid"));
        assert!(args.skip_bad_rows);
        assert_eq!(args.files.len(), 2);
        assert!(Cli::try_parse_from(["portrait", "load", "a.csv"]).is_err());
        assert!(Cli::try_parse_from(["portrait", "load", "--format", "wide"]).is_err());
        assert!(Cli::try_parse_from(["portrait", "drop-version", "vip"]).is_err());
    }

    #[test]
    fn times_render_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_764_028_800_000 + 3_661_000), "2025-11-25 01:01:01");
    }
}
