//! Real-time writes from the command line, and the `admin` commands.
//!
//! - `portrait set KEY PATH=VALUE…` and `portrait clear KEY PATH…`: one batch for one user.
//! - `portrait write --file FILE`: a TSV file of `key<TAB>path<TAB>value` lines (an empty value
//!   clears; blank lines and a first line `key<TAB>path<TAB>value` are skipped), read twice:
//!   once to check every line, so that a bad line sends nothing, then to send batches of
//!   `--batch` writes (10,000 by default) with a progress bar on stderr when it is a terminal.
//!   Each batch is atomic; when one fails, the batches before it stay applied and the error says
//!   how many there were.
//! - `portrait admin backup DIR`, `admin compact`, `admin delta`.
//!
//! A value is written as text and typed by its field's kind, which the catalog tells
//! ([`parse_value`]): a flag is `true` (set) or `false` (clear); an enum any text; a set a
//! comma-separated list; an int a whole number; a decimal a plain decimal (`12.50`); a timestamp
//! RFC 3339 (`2026-11-25T08:30:00Z`, `2026-11-25 08:30:00+08:00`), a date (`2026-11-25`,
//! midnight UTC) or Unix milliseconds; an event an occurrence appended, `TIME` or `COUNT@TIME`
//! with TIME a timestamp as above or `now`.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use portrait_client::proto::{self as v1, field_write::Change, value::Kind as ValueKind};
use portrait_client::{Client, Error as ClientError};
use serde_json::{Value as Json, json};

use super::args::parse_date;
use super::load::draw_target;
use super::output::{Align, Table, group_digits, human_bytes};

/// Writes per batch of `portrait write` unless `--batch` says otherwise.
pub const DEFAULT_BATCH: usize = 10_000;
/// Deadline of the admin calls that may run long (backup, compaction).
const LONG_CALL: Duration = Duration::from_secs(24 * 3600);

/// One `PATH=VALUE` argument of `portrait set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The field path.
    pub path: String,
    /// The value as written, typed later by the field's kind.
    pub value: String,
}

/// Parses `PATH=VALUE` (split at the first `=`; the value may contain more).
pub fn parse_assignment(text: &str) -> Result<Assignment, String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not PATH=VALUE"))?;
    let path = path.trim();
    if path.is_empty() {
        return Err(format!("`{text}` has no field path before `=`"));
    }
    if value.is_empty() {
        return Err(format!(
            "`{text}` has no value after `=` (to remove a value: portrait clear KEY {path})"
        ));
    }
    Ok(Assignment {
        path: path.to_owned(),
        value: value.to_owned(),
    })
}

/// Arguments of `portrait write`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WriteArgs {
    /// A TSV file of key<TAB>path<TAB>value lines; an empty value clears the field.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Writes per batch (each batch is applied atomically).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH, value_parser = parse_batch)]
    pub batch: usize,
}

fn parse_batch(text: &str) -> Result<usize, String> {
    match text.replace('_', "").parse::<usize>() {
        Ok(n @ 1..=100_000) => Ok(n),
        _ => Err(format!("`{text}` is not a batch size from 1 to 100000")),
    }
}

/// `portrait admin …`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AdminCommand {
    /// Write a consistent online backup of every table into DIR on the server (which must not
    /// exist or be empty); restore it with `portraitd --restore DIR`.
    Backup {
        /// The backup directory, on the server's file system (a relative path is made absolute
        /// from the current directory, which is right when the server runs on this machine).
        dir: PathBuf,
    },
    /// Fold the table's pending real-time changes into its stored versions now.
    Compact,
    /// Show the size of the table's real-time delta (changes not yet compacted).
    Delta,
}

/// The kinds of the fields a command writes, fetched from the catalog once each.
#[derive(Debug, Default)]
pub struct Kinds {
    known: HashMap<String, v1::FieldKind>,
}

impl Kinds {
    /// Every field of the table at once (for files naming many fields).
    async fn preload(client: &Client) -> anyhow::Result<Self> {
        let fields = client
            .list_fields()
            .await
            .context("cannot list the table's fields")?;
        Ok(Kinds {
            known: fields
                .into_iter()
                .map(|f| (f.path.clone(), f.kind()))
                .collect(),
        })
    }

    /// The kind of field `path`; an unknown field fails with the server's `NOT_FOUND` (which
    /// names the closest path).
    async fn of(&mut self, client: &Client, path: &str) -> Result<v1::FieldKind, ClientError> {
        if let Some(kind) = self.known.get(path) {
            return Ok(*kind);
        }
        let kind = client.field(path).await?.kind();
        self.known.insert(path.to_owned(), kind);
        Ok(kind)
    }
}

/// The change `text` means for a field of `kind` at `path`.
pub fn parse_value(kind: v1::FieldKind, path: &str, text: &str) -> Result<Change, String> {
    use v1::FieldKind as K;
    let value = |kind: ValueKind| Ok(Change::Value(v1::Value { kind: Some(kind) }));
    match kind {
        K::Flag => match text {
            "true" => value(ValueKind::FlagValue(true)),
            "false" => Ok(Change::Clear(true)),
            _ => Err(format!(
                "`{path}` is a flag: its value is `true` (set) or `false` (clear), not `{text}`"
            )),
        },
        K::Enum => value(ValueKind::StringValue(text.to_owned())),
        K::Set => value(ValueKind::SetValue(v1::StringSet {
            values: text
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        })),
        K::Int => text
            .trim()
            .parse::<i64>()
            .map(ValueKind::IntValue)
            .map_err(|_| format!("`{path}` is an int: `{text}` is not a whole number"))
            .and_then(value),
        K::Decimal => {
            let text = text.trim();
            if is_plain_decimal(text) {
                value(ValueKind::DecimalValue(text.to_owned()))
            } else {
                Err(format!(
                    "`{path}` is a decimal: `{text}` is not a plain decimal number like 12.50"
                ))
            }
        }
        K::Timestamp => parse_timestamp(text.trim())
            .map(ValueKind::TimestampUnixMs)
            .map_err(|e| format!("`{path}` is a timestamp: {e}"))
            .and_then(value),
        K::Event => parse_occurrence(text.trim())
            .map(|(count, at_unix_ms)| Change::Event(v1::EventAppend { at_unix_ms, count }))
            .map_err(|e| format!("`{path}` is an event: {e}")),
        K::Unspecified => Err(format!(
            "the server reports no kind for `{path}`; it may be newer than this client"
        )),
    }
}

/// An event occurrence `TIME` or `COUNT@TIME` (a count of at least 1), TIME as in
/// [`parse_timestamp`] or `now`.
pub fn parse_occurrence(text: &str) -> Result<(u32, i64), String> {
    let (count, time) = match text.split_once('@') {
        Some((count, time)) => match count.trim().parse::<u32>() {
            Ok(n @ 1..) => (n, time.trim()),
            _ => {
                return Err(format!(
                    "`{count}` in `{text}` is not a count of at least 1"
                ));
            }
        },
        None => (1, text),
    };
    let at = if time == "now" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?;
        i64::try_from(now.as_millis()).map_err(|_| "the clock is out of range".to_owned())?
    } else {
        parse_timestamp(time)?
    };
    Ok((count, at))
}

fn is_plain_decimal(text: &str) -> bool {
    let digits = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

/// Unix milliseconds of an RFC 3339 time (`T` or a space between date and time, optional
/// fraction of a second, `Z` or `±HH:MM`), of a date `YYYY-MM-DD` (midnight UTC), or written
/// as a whole number of milliseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let invalid = || {
        format!(
            "`{text}` is not RFC 3339 (2026-11-25T08:30:00Z), a date (2026-11-25) or Unix \
             milliseconds"
        )
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let date = text.get(..10).ok_or_else(invalid)?;
    parse_date(date).map_err(|_| invalid())?;
    let number = |s: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse().map_err(|_| invalid())
    };
    let days = days_from_civil(
        number(&date[..4])?,
        number(&date[5..7])?,
        number(&date[8..10])?,
    );
    let rest = &text[10..];
    if rest.is_empty() {
        return Ok(days * 86_400_000);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))
        .ok_or_else(invalid)?;
    // HH:MM:SS
    let clock = rest.get(..8).ok_or_else(invalid)?;
    let b = clock.as_bytes();
    if b[2] != b':' || b[5] != b':' {
        return Err(invalid());
    }
    let (h, m, s) = (
        number(&clock[..2])?,
        number(&clock[3..5])?,
        number(&clock[6..8])?,
    );
    if h > 23 || m > 59 || s > 60 {
        return Err(invalid());
    }
    let mut rest = &rest[8..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err(invalid());
        }
        // Milliseconds: the first three digits, truncated.
        let digits = format!("{:0<3}", &fraction[..len.min(3)]);
        millis = number(&digits)?;
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(invalid()),
            };
            let zone = &rest[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return Err(invalid());
            }
            let (zh, zm) = (number(&zone[..2])?, number(&zone[3..])?);
            if zh > 23 || zm > 59 {
                return Err(invalid());
            }
            sign * (zh * 60 + zm)
        }
    };
    let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// set, clear, write
// ---------------------------------------------------------------------------------------------

/// Runs `portrait set KEY PATH=VALUE…`.
pub async fn set(
    client: &Client,
    key: &str,
    values: &[Assignment],
    json: bool,
) -> anyhow::Result<()> {
    let mut kinds = Kinds::default();
    let mut writes = Vec::with_capacity(values.len());
    for a in values {
        let kind = kinds.of(client, &a.path).await?;
        let change = parse_value(kind, &a.path, &a.value).map_err(anyhow::Error::msg)?;
        writes.push(v1::FieldWrite {
            key: key.to_owned(),
            path: a.path.clone(),
            change: Some(change),
        });
    }
    let response = client.write().extend(writes).await?;
    print(&batch_report(key, &response), json)
}

/// Runs `portrait clear KEY PATH…`.
pub async fn clear(client: &Client, key: &str, paths: &[String], json: bool) -> anyhow::Result<()> {
    let mut request = client.write();
    for path in paths {
        request = request.clear(key, path);
    }
    let response = request.await?;
    print(&batch_report(key, &response), json)
}

fn batch_report(key: &str, r: &v1::WriteResponse) -> Report {
    Report {
        json: json!({ "key": key, "writes": r.writes, "new_users": r.new_users, "seq": r.seq }),
        table: {
            let mut t = Table::new(&[
                ("KEY", Align::Left),
                ("WRITES", Align::Right),
                ("NEW USERS", Align::Right),
                ("SEQ", Align::Right),
            ]);
            t.row(vec![
                key.to_owned(),
                group_digits(r.writes),
                group_digits(r.new_users),
                r.seq.to_string(),
            ]);
            t
        },
    }
}

/// One line of a write file, parsed.
struct Line {
    number: u64,
    write: v1::FieldWrite,
}

/// The writes of a write file, line by line.
struct WriteFile<'a> {
    path: &'a Path,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    number: u64,
}

impl<'a> WriteFile<'a> {
    fn open(path: &'a Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(WriteFile {
            path,
            lines: BufReader::new(file).lines(),
            number: 0,
        })
    }

    fn at(&self) -> String {
        format!("{}, line {}", self.path.display(), self.number)
    }

    /// The next write, typed by its field's kind; `None` at the end of the file.
    async fn next(&mut self, client: &Client, kinds: &mut Kinds) -> anyhow::Result<Option<Line>> {
        loop {
            let Some(line) = self.lines.next() else {
                return Ok(None);
            };
            self.number += 1;
            let line = line.with_context(|| self.at())?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.trim().is_empty() || (self.number == 1 && line == "key\tpath\tvalue") {
                continue;
            }
            let mut cells = line.splitn(3, '\t');
            let (Some(key), Some(field), Some(text)) = (cells.next(), cells.next(), cells.next())
            else {
                bail!("{}: expected key<TAB>path<TAB>value", self.at());
            };
            if key.is_empty() || field.is_empty() {
                bail!("{}: the key and the path must not be empty", self.at());
            }
            let change = if text.is_empty() {
                Change::Clear(true)
            } else {
                let kind = kinds.of(client, field).await.with_context(|| self.at())?;
                parse_value(kind, field, text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| self.at())?
            };
            return Ok(Some(Line {
                number: self.number,
                write: v1::FieldWrite {
                    key: key.to_owned(),
                    path: field.to_owned(),
                    change: Some(change),
                },
            }));
        }
    }
}

/// Runs `portrait write --file FILE`.
pub async fn write(client: &Client, args: &WriteArgs, json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut kinds = Kinds::preload(client).await?;
    // First pass: every line must parse before anything is sent.
    let mut total = 0u64;
    let mut file = WriteFile::open(&args.file)?;
    while file.next(client, &mut kinds).await?.is_some() {
        total += 1;
    }

    let bar = ProgressBar::with_draw_target(Some(total), draw_target(json));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {human_pos}/{human_len} writes ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut done = Done::default();
    let mut file = WriteFile::open(&args.file)?;
    let mut batch: Vec<v1::FieldWrite> = Vec::with_capacity(args.batch);
    let mut lines = (0, 0);
    loop {
        let line = file.next(client, &mut kinds).await?;
        let end = line.is_none();
        if let Some(line) = line {
            if batch.is_empty() {
                lines.0 = line.number;
            }
            lines.1 = line.number;
            batch.push(line.write);
        }
        if batch.len() == args.batch || (end && !batch.is_empty()) {
            let writes = std::mem::replace(&mut batch, Vec::with_capacity(args.batch));
            let n = writes.len() as u64;
            let response = client.write().extend(writes).await.with_context(|| {
                format!(
                    "batch {} (lines {}-{}) failed; the {} batches before it ({} writes) were \
                     applied",
                    done.batches + 1,
                    lines.0,
                    lines.1,
                    done.batches,
                    group_digits(done.writes)
                )
            })?;
            done.batches += 1;
            done.writes += response.writes;
            done.new_users += response.new_users;
            done.last_seq = Some(response.seq);
            bar.inc(n);
        }
        if end {
            break;
        }
    }
    bar.finish_and_clear();
    print(&done.report(started.elapsed()), json)
}

#[derive(Debug, Default)]
struct Done {
    batches: u64,
    writes: u64,
    new_users: u64,
    last_seq: Option<u64>,
}

impl Done {
    fn report(&self, elapsed: Duration) -> Report {
        let mut t = Table::new(&[
            ("WRITES", Align::Right),
            ("BATCHES", Align::Right),
            ("NEW USERS", Align::Right),
            ("LAST SEQ", Align::Right),
            ("SECONDS", Align::Right),
        ]);
        t.row(vec![
            group_digits(self.writes),
            group_digits(self.batches),
            group_digits(self.new_users),
            self.last_seq.map_or("-".to_owned(), |s| s.to_string()),
            format!("{:.1}", elapsed.as_secs_f64()),
        ]);
        Report {
            json: json!({
                "writes": self.writes,
                "batches": self.batches,
                "new_users": self.new_users,
                "last_seq": self.last_seq,
                "elapsed_ms": elapsed.as_millis() as u64,
            }),
            table: t,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// admin
// ---------------------------------------------------------------------------------------------

/// Runs `portrait admin …`.
pub async fn admin(client: &Client, command: &AdminCommand, json: bool) -> anyhow::Result<()> {
    let report = match command {
        AdminCommand::Backup { dir } => {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("cannot make {} absolute", dir.display()))?;
            let text = dir
                .to_str()
                .with_context(|| format!("{} is not valid UTF-8", dir.display()))?;
            let r = client.backup(text).timeout(LONG_CALL).await?;
            backup_report(text, &r)
        }
        AdminCommand::Compact => {
            let r = client.compact().timeout(LONG_CALL).await?;
            compact_report(client.default_table(), &r)
        }
        AdminCommand::Delta => delta_report(client.default_table(), &client.delta_stats().await?),
    };
    print(&report, json)
}

fn backup_report(dir: &str, r: &v1::BackupResponse) -> Report {
    let mut t = Table::new(&[
        ("BACKUP", Align::Left),
        ("FILES", Align::Right),
        ("LINKED", Align::Right),
        ("SIZE", Align::Right),
        ("SECONDS", Align::Right),
    ]);
    t.row(vec![
        dir.to_owned(),
        group_digits(r.files),
        group_digits(r.linked),
        human_bytes(r.bytes),
        format!("{:.1}", r.elapsed_us as f64 / 1e6),
    ]);
    Report {
        json: json!({
            "dir": dir,
            "files": r.files,
            "linked": r.linked,
            "bytes": r.bytes,
            "server_us": r.elapsed_us,
        }),
        table: t,
    }
}

fn compact_report(table: &str, r: &v1::CompactResponse) -> Report {
    let mut t = Table::new(&[
        ("TABLE", Align::Left),
        ("FIELDS", Align::Right),
        ("CHANGES", Align::Right),
        ("WAL FILES REMOVED", Align::Right),
        ("SECONDS", Align::Right),
    ]);
    t.row(vec![
        table.to_owned(),
        group_digits(r.fields),
        group_digits(r.changes),
        group_digits(r.wal_files_removed),
        format!("{:.1}", r.elapsed_us as f64 / 1e6),
    ]);
    Report {
        json: json!({
            "table": table,
            "fields": r.fields,
            "changes": r.changes,
            "wal_files_removed": r.wal_files_removed,
            "server_us": r.elapsed_us,
        }),
        table: t,
    }
}

fn delta_report(table: &str, r: &v1::DeltaStatsResponse) -> Report {
    let mut t = Table::new(&[
        ("TABLE", Align::Left),
        ("PENDING", Align::Right),
        ("COMPACTING", Align::Right),
        ("FIELDS", Align::Right),
        ("WAL FILE", Align::Right),
        ("WAL SIZE", Align::Right),
    ]);
    t.row(vec![
        table.to_owned(),
        group_digits(r.pending),
        group_digits(r.compacting),
        group_digits(r.fields),
        r.wal_file.to_string(),
        human_bytes(r.wal_bytes),
    ]);
    Report {
        json: json!({
            "table": table,
            "pending": r.pending,
            "compacting": r.compacting,
            "fields": r.fields,
            "wal_file": r.wal_file,
            "wal_bytes": r.wal_bytes,
        }),
        table: t,
    }
}

/// A result as a table for people and one JSON object for programs.
struct Report {
    json: Json,
    table: Table,
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    let text = if json {
        format!("{}\n", report.json)
    } else {
        report.table.render()
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use v1::FieldKind as K;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn set_value(kind: v1::FieldKind, text: &str) -> Result<ValueKind, String> {
        match parse_value(kind, "f", text)? {
            Change::Value(v) => Ok(v.kind.unwrap()),
            Change::Clear(_) => Err("clear".into()),
            Change::Event(e) => Err(format!("event {e:?}")),
        }
    }

    #[test]
    fn values_are_typed_by_the_field_kind() {
        assert_eq!(set_value(K::Flag, "true"), Ok(ValueKind::FlagValue(true)));
        assert_eq!(parse_value(K::Flag, "f", "false"), Ok(Change::Clear(true)));
        assert!(
            set_value(K::Flag, "yes")
                .unwrap_err()
                .contains("`true` (set)")
        );
        assert_eq!(
            set_value(K::Enum, "female"),
            Ok(ValueKind::StringValue("female".into()))
        );
        assert_eq!(
            set_value(K::Set, "sports, travel,,"),
            Ok(ValueKind::SetValue(v1::StringSet {
                values: vec!["sports".into(), "travel".into()]
            }))
        );
        assert_eq!(set_value(K::Int, "-42"), Ok(ValueKind::IntValue(-42)));
        assert!(
            set_value(K::Int, "4.2")
                .unwrap_err()
                .contains("whole number")
        );
        assert_eq!(
            set_value(K::Decimal, "12.50"),
            Ok(ValueKind::DecimalValue("12.50".into()))
        );
        assert_eq!(
            set_value(K::Decimal, "-3"),
            Ok(ValueKind::DecimalValue("-3".into()))
        );
        for bad in ["12,50", "1.", ".5", "1e3", "abc"] {
            assert!(set_value(K::Decimal, bad).is_err(), "{bad}");
        }
        assert_eq!(
            set_value(K::Timestamp, "2026-11-25"),
            Ok(ValueKind::TimestampUnixMs(1_795_564_800_000))
        );
        assert_eq!(
            parse_value(K::Event, "f", "3@2026-11-25"),
            Ok(Change::Event(v1::EventAppend {
                at_unix_ms: 1_795_564_800_000,
                count: 3
            }))
        );
        assert!(
            set_value(K::Event, "0@2026-11-25")
                .unwrap_err()
                .contains("at least 1")
        );
    }

    #[test]
    fn occurrences_have_a_count_and_a_time() {
        assert_eq!(parse_occurrence("2026-11-25"), Ok((1, 1_795_564_800_000)));
        assert_eq!(parse_occurrence("2 @ 1000"), Ok((2, 1000)));
        let (count, now) = parse_occurrence("now").unwrap();
        assert_eq!(count, 1);
        assert!(now > 1_700_000_000_000, "{now}");
        for bad in ["x@now", "-1@now", "0@now", "3@", "soon"] {
            assert!(parse_occurrence(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_parse_rfc_3339_dates_and_milliseconds() {
        let day = 1_795_564_800_000; // 2026-11-25T00:00:00Z
        assert_eq!(parse_timestamp("2026-11-25"), Ok(day));
        assert_eq!(parse_timestamp("1795564800000"), Ok(day));
        assert_eq!(
            parse_timestamp("2026-11-25T08:30:00Z"),
            Ok(day + 30_600_000)
        );
        assert_eq!(
            parse_timestamp("2026-11-25 08:30:00.25Z"),
            Ok(day + 30_600_250)
        );
        assert_eq!(
            parse_timestamp("2026-11-25T08:30:00+08:00"),
            Ok(day + 30_600_000 - 28_800_000)
        );
        assert_eq!(parse_timestamp("2026-11-24T23:00:00-01:00"), Ok(day));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.123456Z"), Ok(123));
        assert_eq!(parse_timestamp("-1"), Ok(-1));
        for bad in [
            "2026-11-31",
            "2026-11-25T24:00:00Z",
            "2026-11-25T08:30Z",
            "2026-11-25T08:30:00",
            "2026-11-25T08:30:00+0800",
            "2026-11-25T08:30:00.Z",
            "yesterday",
            "",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn set_clear_write_and_admin_parse() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("portrait").chain(args.iter().copied()))
        };
        let cli = parse(&["set", "u42", "vip=true", "note=a=b"]).unwrap();
        let Command::Set { key, values } = cli.command else {
            panic!("not set")
        };
        assert_eq!(key, "u42");
        assert_eq!(
            values[1],
            Assignment {
                path: "note".into(),
                value: "a=b".into()
            }
        );
        assert!(parse(&["set", "u42"]).is_err(), "needs PATH=VALUE");
        assert!(parse(&["set", "u42", "vip"]).is_err());
        assert!(parse(&["set", "u42", "vip="]).is_err());
        assert!(parse(&["set", "u42", "=1"]).is_err());
        let cli = parse(&["clear", "u42", "vip", "city"]).unwrap();
        assert!(matches!(cli.command, Command::Clear { ref paths, .. } if paths.len() == 2));
        assert!(parse(&["clear", "u42"]).is_err());
        let cli = parse(&["write", "--file", "w.tsv"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Write(WriteArgs {
                file: "w.tsv".into(),
                batch: DEFAULT_BATCH
            })
        );
        assert!(parse(&["write", "--file", "w.tsv", "--batch", "0"]).is_err());
        assert!(parse(&["write", "--file", "w.tsv", "--batch", "100001"]).is_err());
        assert!(parse(&["write"]).is_err());
        assert_eq!(
            parse(&["admin", "backup", "/b"]).unwrap().command,
            Command::Admin(AdminCommand::Backup { dir: "/b".into() })
        );
        assert_eq!(
            parse(&["admin", "delta"]).unwrap().command,
            Command::Admin(AdminCommand::Delta)
        );
        assert!(parse(&["admin"]).is_err());
    }

    #[test]
    fn reports_render_as_tables_and_json() {
        let r = batch_report(
            "u42",
            &v1::WriteResponse {
                writes: 2,
                new_users: 1,
                seq: 7,
            },
        );
        assert_eq!(
            r.table.render(),
            "KEY  WRITES  NEW USERS  SEQ\nu42       2          1    7\n"
        );
        assert_eq!(
            r.json,
            json!({"key": "u42", "writes": 2, "new_users": 1, "seq": 7})
        );
        let d = delta_report(
            "users",
            &v1::DeltaStatsResponse {
                pending: 1500,
                compacting: 0,
                fields: 2,
                wal_file: 3,
                wal_bytes: 4096,
            },
        );
        assert!(
            d.table.render().contains("users    1,500"),
            "{}",
            d.table.render()
        );
        assert_eq!(d.json["pending"], 1500);
        assert!(d.table.render().contains("4.0 KiB"), "{}", d.table.render());
        let b = backup_report(
            "/b",
            &v1::BackupResponse {
                files: 4,
                linked: 3,
                bytes: 2048,
                elapsed_us: 0,
            },
        );
        assert!(b.table.render().contains("2.0 KiB"));
        assert_eq!(b.json["linked"], 3);
        let done = Done {
            batches: 2,
            writes: 15_000,
            new_users: 3,
            last_seq: Some(9),
        };
        assert_eq!(done.report(Duration::ZERO).json["writes"], 15_000);
    }
}
