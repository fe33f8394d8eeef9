//! Loading a generated dataset into a Portrait engine table (feature `engine`).
//!
//! Shared by the server's `--demo` dataset and the benchmarks, so both query the same data.
//!
//! Fields:
//! - `demographic/gender`, `geo/city`, `geo/province`, `acquisition/channel`: enum;
//! - `demographic/age`, `account/vip_level`: int;
//! - `commerce/total_spend`: decimal with 2 digits;
//! - `account/registered`, `activity/last_active`: timestamp (midnight UTC of the day);
//! - the [`TAG_COUNT`](crate::TAG_COUNT) flag tags of [`tags`](crate::tags) under their paths;
//! - the 10 event types of [`EVENTS`](crate::EVENTS) (`login`, `view`, …, `pay`) as event
//!   fields, with each user's count per day, over the 30 days ending at
//!   [`REFERENCE_DAY`](crate::REFERENCE_DAY).
//!
//! Everything is one load, so it publishes atomically under one version label.

use portrait_engine::{Bitmap, FieldKind, FieldSpec, LoadSummary, Result, Table, Value};

use crate::{CHANNELS, Event, GENDERS, Generator, PROVINCES, city_names, key, mapping, tags};

const DAY_MS: i64 = 86_400_000;

/// Progress of [`load`], reported to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Users registered so far.
    Users(u32),
    /// Attribute columns staged.
    Attributes,
    /// Tags staged so far.
    Tags(usize),
    /// Days of events staged so far.
    EventDays(usize),
    /// Segments are being written.
    Committing,
}

/// Loads `generator`'s users, attributes and tags into `table` as version `label`.
pub fn load(
    table: &Table,
    generator: &Generator,
    label: &str,
    mut progress: impl FnMut(Progress),
) -> Result<LoadSummary> {
    let n = generator.users();
    let mut load = table.load(label)?;
    // In an empty table engine ids equal generator ids; in general they are mapped.
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        ids.push(load.user(key(i).as_str())?);
        if i % (1 << 20) == 0 {
            progress(Progress::Users(i));
        }
    }
    progress(Progress::Users(n));
    let identity = ids.iter().enumerate().all(|(i, &id)| i as u32 == id);
    let id_of = |i: u32| ids[i as usize];

    let a = generator.attributes();
    let spec = |path: &str, kind| {
        FieldSpec::new(path, kind)
            .description(mapping::description(path))
            .owner("demo")
    };
    let gender = load.field(spec("demographic/gender", FieldKind::Enum))?;
    let age = load.field(spec("demographic/age", FieldKind::Int))?;
    let city = load.field(spec("geo/city", FieldKind::Enum))?;
    let province = load.field(spec("geo/province", FieldKind::Enum))?;
    let channel = load.field(spec("acquisition/channel", FieldKind::Enum))?;
    let registered = load.field(spec("account/registered", FieldKind::Timestamp))?;
    let vip = load.field(spec("account/vip_level", FieldKind::Int))?;
    let spend = load.field(spec(
        "commerce/total_spend",
        FieldKind::Decimal { scale: 2 },
    ))?;
    let last_active = load.field(spec("activity/last_active", FieldKind::Timestamp))?;
    let cities = city_names();
    for i in 0..n {
        let u = i as usize;
        let id = id_of(i);
        load.value_id(
            gender,
            id,
            Value::Str(GENDERS[a.gender[u] as usize].to_owned()),
        )?;
        load.value_id(age, id, Value::Int(a.age[u] as i64))?;
        load.value_id(city, id, Value::Str(cities[a.city[u] as usize].clone()))?;
        load.value_id(
            province,
            id,
            Value::Str(PROVINCES[a.province[u] as usize].to_owned()),
        )?;
        load.value_id(
            channel,
            id,
            Value::Str(CHANNELS[a.channel[u] as usize].to_owned()),
        )?;
        load.value_id(
            registered,
            id,
            Value::Timestamp(a.registered_day[u] as i64 * DAY_MS),
        )?;
        load.value_id(vip, id, Value::Int(a.vip[u] as i64))?;
        load.value_id(
            spend,
            id,
            Value::Decimal {
                units: a.spend_cents[u],
                scale: 2,
            },
        )?;
        load.value_id(
            last_active,
            id,
            Value::Timestamp(a.last_active_day[u] as i64 * DAY_MS),
        )?;
    }
    drop(a);
    progress(Progress::Attributes);

    let mut failure = None;
    let mut handles = Vec::with_capacity(tags().len());
    for t in tags() {
        handles.push(
            load.field(
                FieldSpec::new(t.path.as_str(), FieldKind::Flag)
                    .description(mapping::tag_description(t))
                    .owner("demo"),
            )?,
        );
    }
    generator.for_each_tag(|tag, members| {
        if failure.is_some() {
            return;
        }
        let b = if identity {
            Bitmap::of(members)
        } else {
            let mut mapped: Vec<u32> = members.iter().map(|&m| id_of(m)).collect();
            mapped.sort_unstable();
            Bitmap::of(&mapped)
        };
        if let Err(e) = load.flag_bitmap(handles[tag], &b) {
            failure = Some(e);
        }
        if tag % 100 == 99 {
            progress(Progress::Tags(tag + 1));
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }

    let events: Vec<_> = Event::ALL
        .iter()
        .map(|e| {
            load.field(
                FieldSpec::new(e.name(), FieldKind::Event)
                    .description(mapping::event_description(*e))
                    .owner("demo"),
            )
        })
        .collect::<Result<_>>()?;
    let mut days = 0;
    generator.for_each_event_day(|event, day, members| {
        if failure.is_some() {
            return;
        }
        for (u, count) in members {
            if let Err(e) = load.event_id(events[event as usize], id_of(u), day, u32::from(count)) {
                failure = Some(e);
                return;
            }
        }
        if event == Event::Pay {
            days += 1;
            progress(Progress::EventDays(days));
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    progress(Progress::Committing);
    load.commit()
}
