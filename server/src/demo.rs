//! The `--demo` data set: a table `users` a newcomer can query at once.
//!
//! Built, once, by the deterministic generator `portrait-datagen` (seed [`DEMO_SEED`]) and its
//! engine loader, which the benchmarks share: the same users, attributes and tags on every
//! machine. Everything goes in one engine load labelled with the generator's reference day
//! ([`demo_label`], `2026-11-25`), so the table appears complete or not at all.
//!
//! | field | kind | from |
//! |---|---|---|
//! | `demographic/gender` | enum | `female`, `male`, `unknown` |
//! | `demographic/age` | int | 14 to 80 |
//! | `geo/city`, `geo/province` | enum | 300 cities (`city_000` ..), 34 provinces |
//! | `acquisition/channel` | enum | 20 channels (`organic`, `app_store`, ...) |
//! | `account/registered` | timestamp | midnight UTC of the registration day |
//! | `account/vip_level` | int | 0 to 5 |
//! | `commerce/total_spend` | decimal (scale 2) | yuan, 0.00 for non-payers |
//! | `activity/last_active` | timestamp | midnight UTC of the last active day |
//! | 1,000 flag tags | flag | `interest/sports/running`, `risk/blacklist`, ... in 16 families |
//!
//! User keys are `u0000000000`, `u0000000001`, ...; the generator's dense ids are the engine's
//! ids because every user is added, in id order, before any value. The generator's 10 behaviour
//! events (`login`, `view`, …, `pay`) are event fields over the 30 days ending on the reference
//! day.

use std::time::Instant;

use anyhow::Context as _;
use portrait_datagen::load::Progress;
use portrait_datagen::{self as datagen, Generator};
use portrait_engine::{Database, KeyKind, Table};

/// Name of the demo table.
pub const DEMO_TABLE: &str = "users";
/// Seed of the demo data set.
pub const DEMO_SEED: u64 = 42;

/// The version label of the demo load: the generator's reference day, `YYYY-MM-DD`.
pub fn demo_label() -> String {
    let (y, m, d) = civil_from_days(datagen::REFERENCE_DAY.into());
    format!("{y:04}-{m:02}-{d:02}")
}

use portrait_engine::calendar::civil_from_days;

/// Creates and loads the demo table with `users` users, unless the database has it already.
pub fn ensure(db: &Database, users: u32) -> anyhow::Result<()> {
    let table = match db.table(DEMO_TABLE) {
        Ok(table) => {
            let snap = table.snapshot();
            if snap.users() > 0 || snap.fields().next().is_some() {
                tracing::info!(
                    table = DEMO_TABLE,
                    users = snap.users(),
                    "demo table exists; leaving it as it is"
                );
                return Ok(());
            }
            // Created by an earlier start that stopped before its load committed.
            table
        }
        Err(portrait_engine::Error::TableNotFound(_)) => db
            .create_table(DEMO_TABLE, KeyKind::Str)
            .context("creating the demo table")?,
        Err(e) => return Err(e).context("opening the demo table"),
    };
    load(&table, users)
}

/// Generates and loads the demo data set into the empty `table`, logging its progress.
pub fn load(table: &Table, users: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    let label = demo_label();
    tracing::info!(users, seed = DEMO_SEED, label = %label, "demo: loading the data set");
    let generator = Generator::new(DEMO_SEED, users);
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let summary = datagen::load::load(table, &generator, &label, |progress| match progress {
        Progress::Users(n) if n == users => {
            tracing::info!(
                elapsed_ms = elapsed_ms(),
                users = n,
                "demo: users registered"
            )
        }
        Progress::Users(_) => {}
        Progress::Attributes => {
            tracing::info!(elapsed_ms = elapsed_ms(), "demo: attributes staged")
        }
        Progress::Tags(n) if n % 250 == 0 => {
            tracing::info!(elapsed_ms = elapsed_ms(), tags = n, "demo: tags staged")
        }
        Progress::Tags(_) => {}
        Progress::EventDays(n) if n % 10 == 0 => {
            tracing::info!(days = n, elapsed_ms = elapsed_ms(), "demo: events staged")
        }
        Progress::EventDays(_) => {}
        Progress::Committing => tracing::info!(elapsed_ms = elapsed_ms(), "demo: committing"),
    })
    .context("loading the demo data set")?;
    tracing::info!(
        users = summary.users,
        fields = summary.fields,
        bytes = summary.bytes,
        elapsed_ms = elapsed_ms(),
        "demo: table `{DEMO_TABLE}` ready"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_the_reference_day() {
        assert_eq!(demo_label(), "2026-11-25");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }

    #[test]
    fn small_demo_loads_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        ensure(&db, 2_000).unwrap();
        let snap = db.table(DEMO_TABLE).unwrap().snapshot();
        assert_eq!(snap.users(), 2_000);
        assert_eq!(
            snap.fields().count(),
            9 + datagen::TAG_COUNT + datagen::EVENTS.len()
        );
        let female = snap
            .crowd_text("demographic/gender = 'female'")
            .unwrap()
            .count()
            .unwrap();
        assert!((800..1200).contains(&female), "{female}");
        let portrait = snap.portrait("u0000000007").unwrap();
        assert!(portrait.iter().any(|(p, _)| p == "commerce/total_spend"));
        // A second start leaves the table alone.
        ensure(&db, 10).unwrap();
        assert_eq!(db.table(DEMO_TABLE).unwrap().snapshot().users(), 2_000);
    }
}
