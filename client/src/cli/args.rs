//! Command-line arguments of `portrait`, declared with clap derive.
//!
//! Every check that can be expressed here is, so that a malformed command line is always a clap
//! usage error (exit code 2) and never reaches the server.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use portrait_client::proto::{self as v1, TopOrder};
use portrait_client::{DEFAULT_ADDRESS, DEFAULT_TABLE};

/// Query a Portrait user-profiling database from the command line.
///
/// Expressions use the text form, e.g. `vip AND age >= 30 AND city IN ('Beijing', 'Shanghai')`;
/// quote them for your shell.
#[derive(Debug, Parser)]
#[command(
    name = "portrait",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Server address.
    #[arg(long, global = true, value_name = "URL", env = "PORTRAIT_ADDR", default_value = DEFAULT_ADDRESS)]
    pub addr: String,

    /// Table to query.
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_TABLE)]
    pub table: String,

    /// Print each result as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Deadline of each call, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

/// The version label to read at, shared by query and analysis commands.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct Snapshot {
    /// Read every field as of this version label (e.g. 2026-11-25) instead of the latest data.
    #[arg(long, value_name = "LABEL")]
    pub as_of: Option<String>,
}

/// What `portrait` does.
#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// List the tables.
    Tables,

    /// Show the tag catalog as a tree.
    Tags {
        /// Show only the subtree at this path.
        path: Option<String>,
    },

    /// Show one field's metadata, statistics and versions.
    Field {
        /// Full path of the field, e.g. demographic/gender.
        path: String,
    },

    /// Count the users matching an expression.
    Count {
        /// The crowd expression.
        expr: String,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Stream the keys of the users matching an expression.
    Members {
        /// The crowd expression.
        expr: String,
        /// Stop after this many keys.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Resume an earlier export after the batch that returned this cursor.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Tell whether one user matches an expression.
    Contains {
        /// The user's key.
        key: String,
        /// The crowd expression.
        expr: String,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Show everything known about one user.
    Portrait {
        /// The user's key.
        key: String,
        /// Only fields under these path prefixes.
        #[arg(long = "prefix", value_name = "PATH", value_delimiter = ',')]
        prefixes: Vec<String>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Break a crowd down by 1 to 3 dimensions, with shares and TGI.
    Group {
        /// The crowd expression.
        expr: String,
        /// 1 to 3 dimensions (flag, enum or set field paths), comma-separated.
        #[arg(long, value_name = "DIM[,DIM…]", required = true, value_parser = parse_dims)]
        by: Dims,
        /// Base population for shares and TGI (default: all users).
        #[arg(long, value_name = "EXPR")]
        base: Option<String>,
        /// At most this many rows, largest first.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Rank the values of a field (or of every field under a path) within a crowd.
    Top {
        /// The crowd expression.
        expr: String,
        /// A field path or a path prefix.
        #[arg(long, value_name = "PATH")]
        field: String,
        /// Number of rows.
        #[arg(short, value_name = "N", default_value_t = 10)]
        k: u32,
        /// What orders the rows (descending).
        #[arg(long = "by", value_enum, default_value_t = TopBy::Count)]
        by: TopBy,
        /// Base population for TGI (default: all users).
        #[arg(long, value_name = "EXPR")]
        base: Option<String>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Histogram of a numeric field over a crowd.
    Dist {
        /// The crowd expression.
        expr: String,
        /// Path of an int, decimal or timestamp field.
        #[arg(long, value_name = "PATH")]
        field: String,
        #[command(flatten)]
        buckets: BucketArgs,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Count, sum, average, min, max and percentiles of a numeric field over a crowd.
    Agg {
        /// The crowd expression.
        expr: String,
        /// Path of an int, decimal or timestamp field.
        #[arg(long, value_name = "PATH")]
        field: String,
        /// Percentiles to compute, comma-separated, each in [0, 100].
        #[arg(
            long,
            value_name = "P[,P…]",
            value_delimiter = ',',
            default_value = "50,90,99",
            value_parser = parse_percentile
        )]
        percentiles: Vec<f64>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Pairwise overlap of two or more crowds.
    Overlap {
        /// The crowd expressions.
        #[arg(required = true, num_args = 2.., value_name = "EXPR")]
        exprs: Vec<String>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// A random sample of a crowd's keys.
    Sample {
        /// The crowd expression.
        expr: String,
        /// Number of keys.
        #[arg(short, value_name = "N", required = true)]
        n: u32,
        /// Seed, to repeat a sample.
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Show how an expression is evaluated.
    Explain {
        /// The crowd expression.
        expr: String,
        /// Also run the plan and report actual cardinalities and times.
        #[arg(long)]
        analyze: bool,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Retention: of the users who did an event in a period, how many came back later.
    Retention {
        /// The event that puts a user in a cohort.
        #[arg(long, value_name = "EVENT")]
        cohort: String,
        /// The event that counts as coming back.
        #[arg(long = "return", value_name = "EVENT")]
        return_event: String,
        #[command(flatten)]
        dates: DateArgs,
        /// The unit of cohorts and offsets.
        #[arg(long, value_enum, default_value_t = PeriodArg::Day)]
        period: PeriodArg,
        /// Offsets computed: 0 to N periods after the cohort's.
        #[arg(long, value_name = "N", default_value_t = 7)]
        periods: u32,
        /// Split every cohort by the values of this enum or set field.
        #[arg(long, value_name = "DIM")]
        split: Option<String>,
        #[command(flatten)]
        crowd: CrowdArgs,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// An ordered funnel of events within a window of days, with conversion and drop-off.
    Funnel {
        /// The events of the steps, in order (2 or more).
        #[arg(required = true, num_args = 2.., value_name = "EVENT")]
        steps: Vec<String>,
        /// Days the last step may come after the first.
        #[arg(long, value_name = "DAYS", default_value_t = 7)]
        window: u32,
        #[command(flatten)]
        dates: DateArgs,
        /// Break the funnel down by the values of this enum or set field.
        #[arg(long, value_name = "DIM")]
        split: Option<String>,
        #[command(flatten)]
        crowd: CrowdArgs,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// How many users did an event on 1, 2, … days (or times) of a range.
    Freq {
        /// The event.
        event: String,
        #[command(flatten)]
        dates: DateArgs,
        /// Count days with the event (the default).
        #[arg(long, conflicts_with = "times")]
        days: bool,
        /// Count times instead of days.
        #[arg(long)]
        times: bool,
        #[command(flatten)]
        crowd: CrowdArgs,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Users who did an event in each day, week or month of a range (DAU / WAU / MAU).
    Active {
        /// The event.
        event: String,
        #[command(flatten)]
        dates: DateArgs,
        /// The unit of the series.
        #[arg(long, value_enum, default_value_t = PeriodArg::Day)]
        period: PeriodArg,
        #[command(flatten)]
        crowd: CrowdArgs,
        #[command(flatten)]
        snapshot: Snapshot,
    },

    /// Size statistics of every table.
    Stats,

    /// Client and server versions.
    Version,

    /// Load CSV, TSV or Parquet files as a new version of their fields.
    #[command(disable_version_flag = true)]
    Load(super::load::LoadArgs),

    /// List the kept versions of a field (label, time, users, size).
    Versions {
        /// Full path of the field.
        path: String,
    },

    /// Drop one version of a field.
    DropVersion {
        /// Full path of the field.
        path: String,
        /// The version label.
        label: String,
    },

    /// Set values (or append events) of one user in real time, as one atomic batch.
    ///
    /// Each VALUE is typed by its field's kind: flag `true` (sets) or `false` (clears); enum
    /// text; set a comma-separated list; int; decimal like 12.50; timestamp as RFC 3339,
    /// YYYY-MM-DD or Unix milliseconds; event an occurrence to append, TIME or COUNT@TIME (TIME
    /// a timestamp or `now`). A key the table does not know adds a user.
    Set {
        /// The user's key.
        key: String,
        /// The values, e.g. interest/sports=true account/vip_level=3.
        #[arg(required = true, value_name = "PATH=VALUE", value_parser = super::realtime::parse_assignment)]
        values: Vec<super::realtime::Assignment>,
    },

    /// Remove values of one user in real time (a flag: the user no longer has it).
    Clear {
        /// The user's key.
        key: String,
        /// The fields to clear.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },

    /// Write values from a TSV file of key, path and value in real time, in atomic batches.
    Write(super::realtime::WriteArgs),

    /// Administration: backups, compaction, the real-time delta.
    #[command(subcommand)]
    Admin(super::realtime::AdminCommand),
}

impl Command {
    /// The main crowd expression of the command, used to point at errors.
    pub fn expression(&self) -> Option<&str> {
        match self {
            Command::Count { expr, .. }
            | Command::Members { expr, .. }
            | Command::Contains { expr, .. }
            | Command::Group { expr, .. }
            | Command::Top { expr, .. }
            | Command::Dist { expr, .. }
            | Command::Agg { expr, .. }
            | Command::Sample { expr, .. }
            | Command::Explain { expr, .. } => Some(expr),
            Command::Retention { crowd, .. }
            | Command::Funnel { crowd, .. }
            | Command::Freq { crowd, .. }
            | Command::Active { crowd, .. } => crowd.filter.as_deref(),
            Command::Tables
            | Command::Tags { .. }
            | Command::Field { .. }
            | Command::Portrait { .. }
            | Command::Overlap { .. }
            | Command::Stats
            | Command::Version
            | Command::Load(_)
            | Command::Versions { .. }
            | Command::DropVersion { .. }
            | Command::Set { .. }
            | Command::Clear { .. }
            | Command::Write(_)
            | Command::Admin(_) => None,
        }
    }
}

/// Row order of `top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopBy {
    /// Users holding the value.
    Count,
    /// Share of the crowd.
    Share,
    /// Over-index against the base population.
    Tgi,
}

impl From<TopBy> for TopOrder {
    fn from(by: TopBy) -> Self {
        match by {
            TopBy::Count => TopOrder::Count,
            TopBy::Share => TopOrder::Share,
            TopBy::Tgi => TopOrder::Tgi,
        }
    }
}

/// The inclusive range of dates of a behaviour command.
#[derive(Debug, Clone, Args, PartialEq, Eq)]
pub struct DateArgs {
    /// First day, YYYY-MM-DD (in the table's time zone).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub from: String,
    /// Last day, YYYY-MM-DD, included.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: String,
}

/// The crowd a behaviour command analyses, and the day its relative windows count back from.
#[derive(Debug, Clone, Default, Args, PartialEq, Eq)]
pub struct CrowdArgs {
    /// Analyse only the users matching this expression (default: all users).
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// The day relative windows count back from, YYYY-MM-DD (default: the newest event day).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub reference: Option<String>,
}

/// The unit of a retention matrix or an activity series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeriodArg {
    /// Days.
    Day,
    /// Weeks, Monday to Sunday.
    Week,
    /// Calendar months.
    Month,
}

impl From<PeriodArg> for v1::Period {
    fn from(period: PeriodArg) -> Self {
        match period {
            PeriodArg::Day => v1::Period::Day,
            PeriodArg::Week => v1::Period::Week,
            PeriodArg::Month => v1::Period::Month,
        }
    }
}

/// Parses a calendar date `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<String, String> {
    let invalid = || format!("`{text}` is not a calendar date YYYY-MM-DD");
    if !is_date(text) {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().map_err(|_| invalid());
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(invalid()),
    };
    if !(1..=days_in_month).contains(&day) {
        return Err(invalid());
    }
    Ok(text.to_owned())
}

/// How `dist` chooses its buckets; at most one option may be given (default: `--equal 10`).
#[derive(Debug, Clone, Default, Args, PartialEq)]
#[group(multiple = false)]
pub struct BucketArgs {
    /// Explicit ascending bounds, comma-separated: integers, decimals or dates (YYYY-MM-DD).
    #[arg(long, value_name = "B1,B2,…", value_delimiter = ',', value_parser = parse_literal)]
    pub buckets: Vec<v1::Literal>,
    /// This many buckets of equal width.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub equal: Option<u32>,
    /// This many buckets of (nearly) equal counts.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub quantiles: Option<u32>,
}

/// The dimensions of `group`: 1 to 3 field paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dims(pub Vec<String>);

/// Parses `gender,city` into 1 to 3 non-empty dimensions.
pub fn parse_dims(text: &str) -> Result<Dims, String> {
    let dims: Vec<String> = text.split(',').map(|d| d.trim().to_owned()).collect();
    if dims.iter().any(String::is_empty) {
        return Err(format!("`{text}` has an empty dimension"));
    }
    if dims.len() > 3 {
        return Err(format!("at most 3 dimensions, got {}", dims.len()));
    }
    Ok(Dims(dims))
}

/// Parses a number of seconds (`30`, `0.5`) into a positive duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("`{text}` is not a positive number of seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// Parses a percentile in `[0, 100]`.
pub fn parse_percentile(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a percentile between 0 and 100")),
    }
}

/// Parses a histogram bound: an integer, a decimal (`12.5`, `-0.25`) or a date (`2026-11-25`).
pub fn parse_literal(text: &str) -> Result<v1::Literal, String> {
    use v1::literal::Value;
    let text = text.trim();
    let value = if let Ok(int) = text.parse::<i64>() {
        Value::IntValue(int)
    } else if is_decimal(text) {
        Value::DecimalValue(text.to_owned())
    } else if is_date(text) {
        Value::DateValue(text.to_owned())
    } else {
        return Err(format!(
            "`{text}` is not an integer, a decimal or a date (YYYY-MM-DD)"
        ));
    };
    Ok(v1::Literal { value: Some(value) })
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    match digits.split_once('.') {
        Some((whole, fraction)) => {
            !whole.is_empty()
                && !fraction.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use clap::error::ErrorKind;
    use v1::literal::Value;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("portrait").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_have_defaults_and_work_after_the_subcommand() {
        let cli = parse(&["count", "vip"]).unwrap();
        assert_eq!(cli.table, "users");
        assert!(!cli.json);
        assert_eq!(cli.timeout, Duration::from_secs(30));
        assert_eq!(
            cli.command,
            Command::Count {
                expr: "vip".into(),
                snapshot: Snapshot::default()
            }
        );

        let cli = parse(&["count", "vip AND age >= 30", "--json", "--table", "devices"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.table, "devices");
        assert_eq!(cli.command.expression(), Some("vip AND age >= 30"));

        let cli = parse(&["--addr", "http://db:7070", "--timeout", "0.5", "stats"]).unwrap();
        assert_eq!(cli.addr, "http://db:7070");
        assert_eq!(cli.timeout, Duration::from_millis(500));
    }

    #[test]
    fn as_of_belongs_to_query_commands_only() {
        let cli = parse(&["count", "vip", "--as-of", "2026-11-25"]).unwrap();
        let Command::Count { snapshot, .. } = cli.command else {
            panic!("not count")
        };
        assert_eq!(snapshot.as_of.as_deref(), Some("2026-11-25"));
        let error = parse(&["tables", "--as-of", "2026-11-25"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn group_takes_one_to_three_dimensions() {
        let cli = parse(&["group", "vip", "--by", "gender,city", "--base", "age > 18"]).unwrap();
        let Command::Group {
            by, base, limit, ..
        } = cli.command
        else {
            panic!("not group")
        };
        assert_eq!(by, Dims(vec!["gender".into(), "city".into()]));
        assert_eq!(base.as_deref(), Some("age > 18"));
        assert_eq!(limit, None);
        assert_eq!(
            parse(&["group", "vip"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        for bad in ["a,b,c,d", "a,,b", ""] {
            let error = parse(&["group", "vip", "--by", bad]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn top_defaults_and_orders() {
        let cli = parse(&["top", "vip", "--field", "interest"]).unwrap();
        let Command::Top { k, by, .. } = cli.command else {
            panic!("not top")
        };
        assert_eq!((k, by), (10, TopBy::Count));
        let cli = parse(&[
            "top", "vip", "--field", "interest", "-k", "3", "--by", "tgi",
        ])
        .unwrap();
        let Command::Top { k, by, .. } = cli.command else {
            panic!("not top")
        };
        assert_eq!((k, TopOrder::from(by)), (3, TopOrder::Tgi));
        assert_eq!(
            parse(&["top", "vip", "--field", "x", "--by", "size"])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn dist_bucket_options_are_exclusive_and_typed() {
        let cli = parse(&[
            "dist",
            "vip",
            "--field",
            "age",
            "--buckets",
            "18,25.5,2026-01-01",
        ])
        .unwrap();
        let Command::Dist { buckets, .. } = cli.command else {
            panic!("not dist")
        };
        let values: Vec<_> = buckets
            .buckets
            .into_iter()
            .map(|l| l.value.unwrap())
            .collect();
        assert_eq!(
            values,
            [
                Value::IntValue(18),
                Value::DecimalValue("25.5".into()),
                Value::DateValue("2026-01-01".into())
            ]
        );
        let cli = parse(&["dist", "vip", "--field", "age", "--quantiles", "4"]).unwrap();
        let Command::Dist { buckets, .. } = cli.command else {
            panic!("not dist")
        };
        assert_eq!(
            buckets,
            BucketArgs {
                buckets: vec![],
                equal: None,
                quantiles: Some(4)
            }
        );
        assert_eq!(
            parse(&[
                "dist",
                "vip",
                "--field",
                "age",
                "--equal",
                "5",
                "--quantiles",
                "4"
            ])
            .unwrap_err()
            .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["dist", "vip", "--field", "age", "--equal", "0"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["dist", "vip", "--field", "age", "--buckets", "ten"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn agg_percentiles_default_and_validate() {
        let cli = parse(&["agg", "vip", "--field", "spend"]).unwrap();
        let Command::Agg { percentiles, .. } = cli.command else {
            panic!("not agg")
        };
        assert_eq!(percentiles, [50.0, 90.0, 99.0]);
        let cli = parse(&["agg", "vip", "--field", "spend", "--percentiles", "25,99.9"]).unwrap();
        let Command::Agg { percentiles, .. } = cli.command else {
            panic!("not agg")
        };
        assert_eq!(percentiles, [25.0, 99.9]);
        assert_eq!(
            parse(&["agg", "vip", "--field", "spend", "--percentiles", "101"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn overlap_needs_two_expressions() {
        let cli = parse(&["overlap", "vip", "age > 30", "city = 'Beijing'"]).unwrap();
        let Command::Overlap { exprs, .. } = cli.command else {
            panic!("not overlap")
        };
        assert_eq!(exprs.len(), 3);
        assert_eq!(
            parse(&["overlap", "vip"]).unwrap_err().kind(),
            ErrorKind::TooFewValues
        );
    }

    #[test]
    fn members_sample_and_others_parse() {
        let cli = parse(&["members", "vip", "--limit", "100"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Members {
                limit: Some(100),
                cursor: None,
                ..
            }
        ));
        let cli = parse(&["sample", "vip", "-n", "5", "--seed", "42"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Sample {
                n: 5,
                seed: Some(42),
                ..
            }
        ));
        assert_eq!(
            parse(&["sample", "vip"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let cli = parse(&["contains", "u42", "vip"]).unwrap();
        assert!(
            matches!(&cli.command, Command::Contains { key, expr, .. } if key == "u42" && expr == "vip")
        );
        let cli = parse(&["portrait", "u42", "--prefix", "demographic,interest"]).unwrap();
        let Command::Portrait { prefixes, .. } = cli.command else {
            panic!("not portrait")
        };
        assert_eq!(prefixes, ["demographic", "interest"]);
        assert_eq!(
            parse(&["tags"]).unwrap().command,
            Command::Tags { path: None }
        );
        assert_eq!(
            parse(&["tags", "interest"]).unwrap().command,
            Command::Tags {
                path: Some("interest".into())
            }
        );
        assert!(matches!(
            parse(&["explain", "vip", "--analyze"]).unwrap().command,
            Command::Explain { analyze: true, .. }
        ));
        assert_eq!(parse(&["version"]).unwrap().command, Command::Version);
    }

    #[test]
    fn behaviour_commands_parse() {
        let cli = parse(&[
            "retention",
            "--cohort",
            "login",
            "--return",
            "purchase",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-07",
            "--period",
            "week",
            "--periods",
            "4",
            "--where",
            "vip",
            "--split",
            "gender",
            "--reference",
            "2026-11-20",
        ])
        .unwrap();
        let Command::Retention {
            cohort,
            return_event,
            dates,
            period,
            periods,
            split,
            crowd,
            ..
        } = &cli.command
        else {
            panic!("not retention")
        };
        assert_eq!(
            (cohort.as_str(), return_event.as_str()),
            ("login", "purchase")
        );
        assert_eq!(
            (dates.from.as_str(), dates.to.as_str()),
            ("2026-11-01", "2026-11-07")
        );
        assert_eq!((*period, *periods), (PeriodArg::Week, 4));
        assert_eq!(split.as_deref(), Some("gender"));
        assert_eq!(crowd.reference.as_deref(), Some("2026-11-20"));
        assert_eq!(cli.command.expression(), Some("vip"));

        let cli = parse(&[
            "funnel",
            "view",
            "add_cart",
            "pay",
            "--from",
            "2026-10-27",
            "--to",
            "2026-11-18",
        ])
        .unwrap();
        let Command::Funnel { steps, window, .. } = &cli.command else {
            panic!("not funnel")
        };
        assert_eq!((steps.len(), *window), (3, 7));
        assert_eq!(cli.command.expression(), None);
        assert_eq!(
            parse(&[
                "funnel",
                "view",
                "--from",
                "2026-10-27",
                "--to",
                "2026-11-18"
            ])
            .unwrap_err()
            .kind(),
            ErrorKind::TooFewValues
        );

        let cli = parse(&[
            "freq",
            "purchase",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-25",
            "--times",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Freq {
                times: true,
                days: false,
                ..
            }
        ));
        assert_eq!(
            parse(&[
                "freq",
                "p",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-25",
                "--days",
                "--times"
            ])
            .unwrap_err()
            .kind(),
            ErrorKind::ArgumentConflict
        );
        let cli = parse(&[
            "active",
            "login",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-25",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Active {
                period: PeriodArg::Day,
                ..
            }
        ));
        assert_eq!(
            parse(&["active", "login", "--from", "2026-11-01"])
                .unwrap_err()
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        for bad in ["2026-02-30", "2026-13-01", "2026-1-01", "yesterday"] {
            let error =
                parse(&["active", "login", "--from", bad, "--to", "2026-11-25"]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        assert_eq!(parse_date("2024-02-29").unwrap(), "2024-02-29");
        assert!(parse_date("2023-02-29").is_err());
    }

    #[test]
    fn value_parsers_reject_nonsense() {
        assert_eq!(parse_seconds("2").unwrap(), Duration::from_secs(2));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_percentile("-0.1").is_err());
        assert_eq!(parse_percentile("100").unwrap(), 100.0);
        assert_eq!(
            parse_literal("-7").unwrap().value,
            Some(Value::IntValue(-7))
        );
        assert_eq!(
            parse_literal("-0.25").unwrap().value,
            Some(Value::DecimalValue("-0.25".into()))
        );
        for bad in ["1.", ".5", "1.2.3", "2026-1-01", "1e3", ""] {
            assert!(parse_literal(bad).is_err(), "{bad}");
        }
    }
}
