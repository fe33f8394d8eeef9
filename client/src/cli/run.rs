//! Execution of a parsed command: one client call (or stream), one report per result.

use std::io::{self, BufWriter, IsTerminal as _, Write};

use anyhow::Context as _;
use portrait_client::proto::Measure;
use portrait_client::request::{
    Active, Aggregate, Contains, Count, Distribution, Explain, Frequency, Funnel, GetPortrait,
    Group, Members, Overlap, Retention, Sample, Top,
};
use portrait_client::{Client, ClientBuilder};

use super::args::{BucketArgs, Cli, Command, CrowdArgs, Snapshot};
use super::output::Report;
use super::progress::Progress;

/// Runs the command of `cli`, printing its results on stdout.
///
/// A closed stdout (e.g. `portrait members vip | head`) ends the command quietly and counts as
/// success.
pub async fn run(cli: &Cli) -> anyhow::Result<()> {
    let client = ClientBuilder::new(&cli.addr)
        .default_table(&cli.table)
        .timeout(cli.timeout)
        .connect_lazy()
        .with_context(|| format!("invalid server address `{}`", cli.addr))?;
    let mut printer = Printer::new(cli.json);
    let outcome = execute(&client, &cli.command, &mut printer).await;
    match outcome {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        Err(error) if is_unavailable(&error) => {
            Err(error.context(format!("no answer from {}", cli.addr)))
        }
        other => other,
    }
}

/// Applies `--as-of` to the builders that accept it.
trait AtSnapshot: Sized {
    fn at(self, snapshot: &Snapshot) -> Self;
}

macro_rules! at_snapshot {
    ($($builder:ty),*) => {$(
        impl AtSnapshot for $builder {
            fn at(self, snapshot: &Snapshot) -> Self {
                match &snapshot.as_of {
                    Some(label) => self.as_of(label),
                    None => self,
                }
            }
        }
    )*};
}
at_snapshot!(
    Count,
    Members,
    Contains,
    GetPortrait,
    Group,
    Top,
    Distribution,
    Aggregate,
    Overlap,
    Sample,
    Explain,
    Retention,
    Funnel,
    Frequency,
    Active
);

/// Applies `--where` and `--reference` to the behaviour builders.
trait InCrowd: Sized {
    fn within(self, crowd: &CrowdArgs) -> Self;
}

macro_rules! in_crowd {
    ($($builder:ty),*) => {$(
        impl InCrowd for $builder {
            fn within(self, crowd: &CrowdArgs) -> Self {
                let mut request = self;
                if let Some(filter) = &crowd.filter {
                    request = request.crowd(filter);
                }
                if let Some(date) = &crowd.reference {
                    request = request.reference_date(date);
                }
                request
            }
        }
    )*};
}
in_crowd!(Retention, Funnel, Frequency, Active);

async fn execute(client: &Client, command: &Command, printer: &mut Printer) -> anyhow::Result<()> {
    let report = match command {
        Command::Tables => Report::Tables(client.list_tables().await?),
        Command::Tags { path } => Report::Tree(
            client
                .tree()
                .prefix(path.clone().unwrap_or_default())
                .await?,
        ),
        Command::Field { path } => Report::Field(client.field(path).await?),
        Command::Count { expr, snapshot } => Report::Count(client.count(expr).at(snapshot).await?),
        Command::Members {
            expr,
            limit,
            cursor,
            snapshot,
        } => {
            let mut request = client.members(expr).at(snapshot).limit(limit.unwrap_or(0));
            if let Some(cursor) = cursor {
                request = request.cursor(cursor);
            }
            return export_members(request, printer).await;
        }
        Command::Contains {
            key,
            expr,
            snapshot,
        } => Report::Contains {
            key: key.clone(),
            contains: client.contains(key, expr).at(snapshot).await?,
        },
        Command::Portrait {
            key,
            prefixes,
            snapshot,
        } => Report::Portrait(
            client
                .portrait(key)
                .prefixes(prefixes.iter().cloned())
                .at(snapshot)
                .await?,
        ),
        Command::Group {
            expr,
            by,
            base,
            limit,
            snapshot,
        } => {
            let mut request = client.group(expr, by.0.iter().cloned()).at(snapshot);
            if let Some(base) = base {
                request = request.base(base);
            }
            if let Some(limit) = limit {
                request = request.limit(*limit);
            }
            Report::Group(request.await?)
        }
        Command::Top {
            expr,
            field,
            k,
            by,
            base,
            snapshot,
        } => {
            let mut request = client
                .top(expr, field)
                .k(*k)
                .order((*by).into())
                .at(snapshot);
            if let Some(base) = base {
                request = request.base(base);
            }
            Report::Top(request.await?)
        }
        Command::Dist {
            expr,
            field,
            buckets,
            snapshot,
        } => {
            let request = with_buckets(client.distribution(expr, field), buckets);
            Report::Distribution(request.at(snapshot).await?)
        }
        Command::Agg {
            expr,
            field,
            percentiles,
            snapshot,
        } => Report::Aggregate(
            client
                .aggregate(expr, field)
                .percentiles(percentiles.iter().copied())
                .at(snapshot)
                .await?,
        ),
        Command::Overlap { exprs, snapshot } => Report::Overlap {
            exprs: exprs.clone(),
            response: client.overlap(exprs).at(snapshot).await?,
        },
        Command::Sample {
            expr,
            n,
            seed,
            snapshot,
        } => {
            let mut request = client.sample(expr, *n).at(snapshot);
            if let Some(seed) = seed {
                request = request.seed(*seed);
            }
            let sample = request.await?;
            if seed.is_none() && !printer.json {
                eprintln!(
                    "seed {} (repeat this sample with --seed {})",
                    sample.seed, sample.seed
                );
            }
            Report::Sample(sample)
        }
        Command::Explain {
            expr,
            analyze,
            snapshot,
        } => Report::Explain(client.explain(expr).analyze(*analyze).at(snapshot).await?),
        Command::Retention {
            cohort,
            return_event,
            dates,
            period,
            periods,
            split,
            crowd,
            snapshot,
        } => {
            let mut request = client
                .retention(cohort, return_event, &dates.from, &dates.to)
                .period((*period).into())
                .periods(*periods)
                .within(crowd)
                .at(snapshot);
            if let Some(split) = split {
                request = request.split(split);
            }
            Report::Retention {
                period: (*period).into(),
                response: request.await?,
            }
        }
        Command::Funnel {
            steps,
            window,
            dates,
            split,
            crowd,
            snapshot,
        } => {
            let mut request = client
                .funnel(steps, &dates.from, &dates.to)
                .window_days(*window)
                .within(crowd)
                .at(snapshot);
            if let Some(split) = split {
                request = request.split(split);
            }
            Report::Funnel(request.await?)
        }
        Command::Freq {
            event,
            dates,
            times,
            crowd,
            snapshot,
            ..
        } => Report::Frequency(
            client
                .frequency(event, &dates.from, &dates.to)
                .measure(if *times {
                    Measure::Times
                } else {
                    Measure::Days
                })
                .within(crowd)
                .at(snapshot)
                .await?,
        ),
        Command::Active {
            event,
            dates,
            period,
            crowd,
            snapshot,
        } => Report::Active {
            period: (*period).into(),
            response: client
                .active(event, &dates.from, &dates.to)
                .period((*period).into())
                .within(crowd)
                .at(snapshot)
                .await?,
        },
        Command::Load(args) => return super::load::load(client, args, printer.json).await,
        Command::Versions { path } => {
            return super::load::versions(client, path, printer.json).await;
        }
        Command::DropVersion { path, label } => {
            return super::load::drop_version(client, path, label, printer.json).await;
        }
        Command::Set { key, values } => {
            return super::realtime::set(client, key, values, printer.json).await;
        }
        Command::Clear { key, paths } => {
            return super::realtime::clear(client, key, paths, printer.json).await;
        }
        Command::Write(args) => return super::realtime::write(client, args, printer.json).await,
        Command::Admin(command) => {
            return super::realtime::admin(client, command, printer.json).await;
        }
        Command::Stats => Report::Stats(client.stats().await?),
        Command::Version => Report::Version {
            client: env!("CARGO_PKG_VERSION").to_owned(),
            server: client.version().await?,
        },
    };
    printer.emit(&report)?;
    Ok(())
}

fn with_buckets(request: Distribution, buckets: &BucketArgs) -> Distribution {
    if let Some(n) = buckets.equal {
        request.equal_width(n)
    } else if let Some(n) = buckets.quantiles {
        request.quantiles(n)
    } else if !buckets.buckets.is_empty() {
        request.bounds(buckets.buckets.iter().cloned())
    } else {
        request
    }
}

/// Streams members to stdout batch by batch, with a key counter on stderr when a person is
/// watching stderr but not stdout (keys scrolling on the terminal are progress enough).
async fn export_members(request: Members, printer: &mut Printer) -> anyhow::Result<()> {
    let mut stream = request.await?;
    let watching = !printer.json && !io::stdout().is_terminal();
    let mut progress = Progress::new("keys", watching);
    while let Some(batch) = stream.next_batch().await.with_context(|| {
        format!(
            "export interrupted after {} keys; resume with --cursor '{}'",
            stream.received(),
            stream.cursor()
        )
    })? {
        printer.emit(&Report::Members(batch))?;
        progress.update(stream.received());
    }
    progress.finish();
    Ok(())
}

/// Writes reports to stdout, as text or as one JSON object per line.
struct Printer {
    json: bool,
    out: BufWriter<io::Stdout>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Printer {
            json,
            out: BufWriter::new(io::stdout()),
        }
    }

    fn emit(&mut self, report: &Report) -> io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, &report.json())?;
            self.out.write_all(b"\n")?;
        } else {
            self.out.write_all(report.human().as_bytes())?;
        }
        self.out.flush()
    }
}

fn is_unavailable(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<portrait_client::Error>(),
        Some(portrait_client::Error::Unavailable(_))
    )
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use portrait_client::proto::distribution_request::Buckets;

    use super::*;

    #[test]
    fn broken_pipes_are_recognised_through_context() {
        let pipe =
            anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("printing");
        assert!(is_broken_pipe(&pipe));
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
    }

    #[tokio::test]
    async fn bucket_flags_choose_the_bucketing() {
        let client = ClientBuilder::new("http://127.0.0.1:1")
            .connect_lazy()
            .unwrap();
        let request = |args: BucketArgs| with_buckets(client.distribution("vip", "age"), &args);
        let none = request(BucketArgs::default());
        assert_eq!(none.message().buckets, None);
        let equal = request(BucketArgs {
            equal: Some(4),
            ..BucketArgs::default()
        });
        assert_eq!(equal.message().buckets, Some(Buckets::EqualWidth(4)));
        let quantiles = request(BucketArgs {
            quantiles: Some(3),
            ..BucketArgs::default()
        });
        assert_eq!(quantiles.message().buckets, Some(Buckets::Quantiles(3)));
        let bounds = super::super::args::parse_literal("18").unwrap();
        let explicit = request(BucketArgs {
            buckets: vec![bounds],
            ..BucketArgs::default()
        });
        assert!(
            matches!(explicit.message().buckets, Some(Buckets::Bounds(ref b)) if b.bounds.len() == 1)
        );
    }

    #[tokio::test]
    async fn as_of_is_applied_only_when_given() {
        let client = ClientBuilder::new("http://127.0.0.1:1")
            .connect_lazy()
            .unwrap();
        let latest = client.count("vip").at(&Snapshot::default());
        assert_eq!(latest.message().as_of, None);
        let past = client.count("vip").at(&Snapshot {
            as_of: Some("2026-11-25".into()),
        });
        assert_eq!(past.message().as_of.as_deref(), Some("2026-11-25"));
    }
}
