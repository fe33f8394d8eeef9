//! Real-time writes: set or clear one field of one user, durably, visible to the next query.
//!
//! The data flow of a batch of [`Write`]s through [`crate::Table::write`]:
//!
//! 1. **Validate** against the current snapshot, before anything is logged: the field exists and
//!    has a current version, the value fits its kind (numbers are normalized to the stored units
//!    here), the batch is within [`MAX_BATCH`]. A bad write rejects its whole batch.
//! 2. **Group commit.** The batch joins a queue. The first writer to take the commit lock drains
//!    the queue and, for every batch in it: resolves keys to ids (new keys get the next ids, in
//!    log order), appends one record per batch to the write-ahead log ([`wal`]), and syncs the
//!    log once for all of them. Then it applies the writes to the delta and publishes one new
//!    snapshot. Every writer of the group returns only after that: acknowledged means durable
//!    and visible.
//! 3. **The delta** is two maps of the latest change per field and user — `active`, and
//!    `frozen` while a compaction runs — plus the [`overlay::Overlay`] derived from them, which
//!    the snapshot's read primitives consult first. Changes stay on top of whatever version of
//!    the field is current until a compaction folds them into it.
//! 4. **Compaction** ([`compact`]) rotates the log, freezes the changes, rewrites each changed
//!    field into new segments of its current version (same label), one field at a time so memory
//!    stays bounded by one field, and publishes; real-time writes go on meanwhile into the new
//!    log file and the active map. When every frozen field is written, older log files go.
//! 5. **Recovery**: opening a table replays its log files in order on top of the segments
//!    (idempotently: every write is an absolute value). A torn tail is truncated.
//!
//! Event fields take appends ([`Change::Event`]): "user U did E n times at T". The commit turns
//! each append into the user's new total for that day before logging it, so the log, like
//! every other write, holds absolute values and replays idempotently. Appends may add days
//! (today's, typically) that no load has stored yet; windows count back from the newest day
//! stored or appended.

pub(crate) mod compact;
pub(crate) mod overlay;
#[cfg(test)]
mod tests;
pub(crate) mod wal;

pub use compact::CompactSummary;
pub(crate) use compact::recover;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::SHARD_BITS;
use crate::catalog::FieldKind;
use crate::error::{Error, Result};
use crate::ids::{Key, KeyKind, KeyRef};
use crate::table::{FieldRef, TableSnapshot, Value};
use overlay::{FieldOverlay, Overlay, OverlayData, ShardOverlay};
use wal::{LoggedWrite, WalWriter};

/// A log file this large starts a background compaction whatever the number of pending
/// changes (rewriting the same users keeps that number low while the log grows).
pub const COMPACT_LOG_BYTES: u64 = 256 << 20;

/// Most writes accepted in one batch.
pub const MAX_BATCH: usize = 100_000;
/// Most values in one set-field write.
pub const MAX_SET_VALUES: usize = 4096;
/// Longest string value (bytes).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One real-time write: give user `key` a new value of field `path`, or clear it.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The user; a key the table does not know yet adds a user.
    pub key: Key,
    /// The field, which must exist and have a current version.
    pub path: String,
    /// The new value.
    pub change: Change,
}

impl Write {
    /// Gives `key` the value `value` of `path` (for a flag: [`Value::Flag`]).
    pub fn set(key: impl Into<Key>, path: impl Into<String>, value: Value) -> Self {
        Self {
            key: key.into(),
            path: path.into(),
            change: Change::Set(value),
        }
    }

    /// Clears field `path` of `key` (a flag: takes it away).
    pub fn clear(key: impl Into<Key>, path: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            path: path.into(),
            change: Change::Clear,
        }
    }
}

/// What a [`Write`] does to the field.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sets the value: a flag to set, an enum value, a set's whole list of values (replacing
    /// the old list), or a number (an integer is accepted for decimal and timestamp fields, in
    /// whole units and milliseconds).
    Set(Value),
    /// Removes the value (a flag: the user no longer has it).
    Clear,
    /// Event fields: the user did the event `count` times at `at_ms` (milliseconds since the
    /// Unix epoch; the day is taken in the table's time zone). Counts add up.
    Event {
        /// When.
        at_ms: i64,
        /// How many times (at least 1).
        count: u32,
    },
}

/// When a committed batch is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalSync {
    /// `fdatasync` once per group commit before acknowledging (the default): an acknowledged
    /// write survives a power loss.
    #[default]
    EveryCommit,
    /// Leave syncing to the operating system: an acknowledged write survives a process crash
    /// but not a power loss.
    Os,
}

/// Real-time settings of a table (from [`crate::Options`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RealtimeOptions {
    pub(crate) sync: WalSync,
    /// Start a background compaction once this many changes are pending (0: never by itself).
    pub(crate) compact_after: u64,
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Writes applied.
    pub writes: usize,
    /// Users the batch added to the table.
    pub new_users: u32,
    /// Sequence number of the batch in the table's log.
    pub seq: u64,
}

/// The real-time delta's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeltaStats {
    /// Distinct `(field, user)` changes not yet compacted.
    pub pending: u64,
    /// Of those, the ones a running compaction is folding into segments.
    pub compacting: u64,
    /// Fields with pending changes.
    pub fields: usize,
    /// The log file being appended to.
    pub wal_file: u64,
    /// Its size in bytes.
    pub wal_bytes: u64,
}

/// A value normalized to the field's stored form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Flag,
    Str(String),
    /// Sorted, without duplicates, never empty.
    Strs(Vec<String>),
    /// Numbers in stored units (decimal units, milliseconds).
    Units(i64),
    /// An event's total count for the user on `day` (what the log holds: absolute, so that
    /// replaying it twice changes nothing).
    EventDay {
        day: i32,
        total: u32,
    },
    /// `count` more occurrences on `day`: a validated append before the commit turns it into
    /// an [`Cell::EventDay`] total. Never applied as such.
    EventAdd {
        day: i32,
        count: u32,
    },
}

/// The latest change of each user, per field id.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    pub(crate) fields: HashMap<u32, BTreeMap<u32, Option<Cell>>>,
    /// Event fields: the total count per `(user, day)`.
    pub(crate) events: HashMap<u32, BTreeMap<(u32, i32), u32>>,
}

impl Changes {
    pub(crate) fn len(&self) -> u64 {
        let values: u64 = self.fields.values().map(|m| m.len() as u64).sum();
        values + self.events.values().map(|m| m.len() as u64).sum::<u64>()
    }

    /// Field ids with changes.
    pub(crate) fn field_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .fields
            .keys()
            .chain(self.events.keys())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Moves every change of `other` in, `other`'s winning.
    pub(crate) fn absorb(&mut self, other: Changes) {
        for (fid, by_id) in other.fields {
            self.fields.entry(fid).or_default().extend(by_id);
        }
        for (fid, by_day) in other.events {
            self.events.entry(fid).or_default().extend(by_day);
        }
    }

    /// Drops the changes of field `fid`.
    pub(crate) fn remove(&mut self, fid: u32) {
        self.fields.remove(&fid);
        self.events.remove(&fid);
    }

    /// The total count of `id` on `day` for event `fid`, if changed.
    fn event_total(&self, fid: u32, id: u32, day: i32) -> Option<u32> {
        self.events.get(&fid)?.get(&(id, day)).copied()
    }
}

/// The writer side of a table's real-time path. Lock order: a table's bulk-writer lock, then
/// `state`; never the reverse.
#[derive(Debug)]
pub(crate) struct Realtime {
    pub(crate) state: Mutex<RtState>,
    queue: Mutex<Vec<Pending>>,
    pub(crate) options: RealtimeOptions,
    /// Held for the whole of a compaction: one at a time.
    pub(crate) compaction: Mutex<()>,
    /// A background compaction is scheduled or running.
    pub(crate) scheduled: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Pending {
    writes: Vec<LoggedWrite>,
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    result: Mutex<Option<Result<WriteSummary>>>,
}

/// Everything the committing writer owns.
#[derive(Debug)]
pub(crate) struct RtState {
    pub(crate) wal: WalWriter,
    pub(crate) seq: u64,
    /// The snapshot of the stored versions alone (no delta): what the overlay is merged onto.
    pub(crate) base: Arc<TableSnapshot>,
    pub(crate) active: Changes,
    pub(crate) frozen: Changes,
    pub(crate) overlay: Overlay,
    pub(crate) compacting: bool,
}

impl RtState {
    /// The snapshot readers should see: the base with the current overlay.
    pub(crate) fn visible(&self) -> TableSnapshot {
        self.base.with_overlay(Arc::new(self.overlay.clone()))
    }

    /// Recomputes the overlay from the changes against the current base (after the base
    /// changed: a load, a compaction, a dropped version).
    pub(crate) fn rebuild_overlay(&mut self) {
        let mut overlay = Overlay::default();
        let base = self.base.clone();
        for changes in [&self.frozen, &self.active] {
            for (&fid, by_id) in &changes.fields {
                let Some(field) = base.field_by_id(fid) else {
                    continue;
                };
                for (&id, cell) in by_id {
                    if let Err(e) = apply(&mut overlay, &field, id, cell.as_ref()) {
                        tracing::warn!(field = field.path(), id, error = %e, "real-time change not applied");
                    }
                }
            }
            for (&fid, by_day) in &changes.events {
                let Some(field) = base.field_by_id(fid) else {
                    continue;
                };
                for (&(id, day), &total) in by_day {
                    let cell = Cell::EventDay { day, total };
                    if let Err(e) = apply(&mut overlay, &field, id, Some(&cell)) {
                        tracing::warn!(field = field.path(), id, error = %e, "real-time append not applied");
                    }
                }
            }
        }
        overlay.users = self.overlay.users.max(base.users());
        self.overlay = overlay;
    }

    pub(crate) fn stats(&self) -> DeltaStats {
        let mut fields = self.active.field_ids();
        fields.extend(self.frozen.field_ids());
        fields.sort_unstable();
        fields.dedup();
        let compacting = self.frozen.len();
        DeltaStats {
            pending: self.active.len() + compacting,
            compacting,
            fields: fields.len(),
            wal_file: self.wal.number(),
            wal_bytes: self.wal.len(),
        }
    }
}

impl Realtime {
    pub(crate) fn new(state: RtState, options: RealtimeOptions) -> Self {
        Self {
            state: Mutex::new(state),
            queue: Mutex::new(Vec::new()),
            options,
            compaction: Mutex::new(()),
            scheduled: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Checks a batch against `snap` and normalizes its values for the log.
pub(crate) fn validate(snap: &TableSnapshot, writes: &[Write]) -> Result<Vec<LoggedWrite>> {
    if writes.len() > MAX_BATCH {
        return Err(Error::LimitExceeded(format!(
            "a batch of {} writes exceeds the limit of {MAX_BATCH}",
            writes.len()
        )));
    }
    let kind = snap.key_kind();
    let mut out = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        let at = |e: Error| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("write {i}: {m}")),
            e => e,
        };
        match (&w.key, kind) {
            (Key::Str(s), KeyKind::Str) => {
                if s.is_empty() || s.len() > MAX_VALUE_BYTES {
                    return Err(at(Error::InvalidArgument(format!(
                        "key must be 1 to {MAX_VALUE_BYTES} bytes"
                    ))));
                }
            }
            (Key::U64(_), KeyKind::U64) => {}
            (k, kind) => {
                return Err(at(Error::InvalidArgument(format!(
                    "key {k} does not fit a table keyed by {}",
                    kind.name()
                ))));
            }
        }
        let field = snap.field(&w.path)?;
        let cell = normalize(&field, &w.change, snap.utc_offset_minutes()).map_err(at)?;
        out.push(LoggedWrite {
            key: w.key.clone(),
            path: w.path.clone(),
            cell,
        });
    }
    Ok(out)
}

fn normalize(field: &FieldRef<'_>, change: &Change, utc_offset: i32) -> Result<Option<Cell>> {
    let kind = field.kind();
    let path = field.path();
    let value = match change {
        Change::Event { at_ms, count } => {
            if kind != FieldKind::Event {
                return Err(Error::InvalidArgument(format!(
                    "`{path}` is {} field, not an event: it takes values, not event appends",
                    article(kind.name())
                )));
            }
            if *count == 0 {
                return Err(Error::InvalidArgument(format!(
                    "an append to `{path}` needs a count of at least 1"
                )));
            }
            let day = crate::behaviour::day_of_ms(*at_ms, utc_offset);
            crate::behaviour::check_day(day)?;
            return Ok(Some(Cell::EventAdd { day, count: *count }));
        }
        Change::Clear => {
            if kind == FieldKind::Event {
                return Err(unsupported_event(path));
            }
            return Ok(None);
        }
        Change::Set(v) => v,
    };
    let check_str = |s: &str| {
        if s.len() > MAX_VALUE_BYTES {
            Err(Error::InvalidArgument(format!(
                "a value of `{path}` is longer than {MAX_VALUE_BYTES} bytes"
            )))
        } else {
            Ok(())
        }
    };
    let scale_up = |x: i64, by: u8| {
        10i64
            .checked_pow(by as u32)
            .and_then(|m| x.checked_mul(m))
            .ok_or_else(|| Error::InvalidArgument(format!("{x} overflows `{path}`")))
    };
    let cell = match (kind, value) {
        (FieldKind::Event, _) => return Err(unsupported_event(path)),
        (FieldKind::Flag, Value::Flag) => Cell::Flag,
        (FieldKind::Enum, Value::Str(s)) => {
            check_str(s)?;
            Cell::Str(s.clone())
        }
        (FieldKind::Set, Value::Str(s)) => {
            check_str(s)?;
            Cell::Strs(vec![s.clone()])
        }
        (FieldKind::Set, Value::Strs(list)) => {
            if list.len() > MAX_SET_VALUES {
                return Err(Error::LimitExceeded(format!(
                    "{} values for set `{path}` exceed the limit of {MAX_SET_VALUES}",
                    list.len()
                )));
            }
            let mut list = list.clone();
            for s in &list {
                check_str(s)?;
            }
            list.sort_unstable();
            list.dedup();
            if list.is_empty() {
                return Ok(None);
            }
            Cell::Strs(list)
        }
        (FieldKind::Int, Value::Int(x)) => Cell::Units(*x),
        (FieldKind::Timestamp, Value::Timestamp(x) | Value::Int(x)) => Cell::Units(*x),
        (FieldKind::Decimal { scale }, Value::Int(x)) => Cell::Units(scale_up(*x, scale)?),
        (FieldKind::Decimal { scale }, Value::Decimal { units, scale: s }) => {
            if *s <= scale {
                Cell::Units(scale_up(*units, scale - s)?)
            } else {
                let div = 10i64.pow((*s - scale) as u32);
                if units % div != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "`{path}` keeps {scale} decimal places; the value has {s}"
                    )));
                }
                Cell::Units(units / div)
            }
        }
        (_, v) => {
            return Err(Error::InvalidArgument(format!(
                "{} does not fit `{path}`, {} field",
                describe(v),
                article(kind.name())
            )));
        }
    };
    Ok(Some(cell))
}

fn unsupported_event(path: &str) -> Error {
    Error::Unsupported(format!(
        "`{path}` is an event field: it takes event appends (a count at a time), not values or clears"
    ))
}

/// `a flag`, `an int`: a kind's name with its article.
fn article(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// A value as an error message names it: its kind and, when short, the value itself.
fn describe(v: &Value) -> String {
    let short = |s: &str| {
        if s.chars().count() <= 40 {
            format!("{s:?}")
        } else {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
    };
    match v {
        Value::Flag => "a flag value".into(),
        Value::Str(s) => format!("the string {}", short(s)),
        Value::Strs(list) => format!("a list of {} strings", list.len()),
        Value::Int(x) => format!("the integer {x}"),
        Value::Decimal { units, scale } => format!("a decimal ({units} × 10^-{scale})"),
        Value::Timestamp(ms) => format!("the timestamp {ms} ms"),
    }
}

/// Commits `writes` (already validated) through the group commit and returns once they are
/// durable and visible. `publish` swaps a snapshot in.
pub(crate) fn commit(
    rt: &Realtime,
    writes: Vec<LoggedWrite>,
    publish: &dyn Fn(TableSnapshot),
) -> Result<WriteSummary> {
    let slot = Arc::new(Slot::default());
    rt.queue.lock().push(Pending {
        writes,
        slot: slot.clone(),
    });
    let mut st = rt.state.lock();
    if let Some(done) = slot.result.lock().take() {
        return done;
    }
    let mut group = std::mem::take(&mut *rt.queue.lock());
    let results = commit_group(&mut st, &mut group, publish);
    // Results are handed out before the commit lock is released: a writer of this group that
    // takes the lock next finds its result waiting.
    let mut mine = None;
    for (p, r) in group.into_iter().zip(results) {
        if Arc::ptr_eq(&p.slot, &slot) {
            mine = Some(r);
        } else {
            *p.slot.result.lock() = Some(r);
        }
    }
    drop(st);
    mine.unwrap_or_else(|| Err(Error::Internal("a batch left its commit group".into())))
}

fn commit_group(
    st: &mut RtState,
    group: &mut [Pending],
    publish: &dyn Fn(TableSnapshot),
) -> Vec<Result<WriteSummary>> {
    if let Err(e) = settle_appends(st, group) {
        return group.iter().map(|_| Err(e.duplicate())).collect();
    }
    // Log every batch of the group, then sync once.
    let mut records = Vec::new();
    let first_seq = st.seq;
    for (i, p) in group.iter().enumerate() {
        records.extend_from_slice(&wal::encode(first_seq + i as u64, &p.writes));
    }
    if let Err(e) = st.wal.append(&records) {
        // Nothing of the group is acknowledged, and the log is back at its previous end (or
        // refuses every later append: see `WalWriter::append`).
        return group.iter().map(|_| Err(e.duplicate())).collect();
    }
    st.seq += group.len() as u64;
    let mut out = Vec::with_capacity(group.len());
    for (i, p) in group.iter().enumerate() {
        out.push(
            apply_logged(st, &p.writes).map(|(writes, new_users)| WriteSummary {
                writes,
                new_users,
                seq: first_seq + i as u64,
            }),
        );
    }
    publish(st.visible());
    out
}

/// Turns every event append of the group into the user's new total for that day, in order:
/// the log holds totals, so that a replay over segments that already hold them is harmless.
fn settle_appends(st: &RtState, group: &mut [Pending]) -> Result<()> {
    let mut totals: HashMap<(u32, Key, i32), u32> = HashMap::new();
    let dict = st.base.dict.get()?;
    for p in group.iter_mut() {
        for w in &mut p.writes {
            let Some(Cell::EventAdd { day, count }) = w.cell else {
                continue;
            };
            let Ok(field) = st.base.field(&w.path) else {
                continue;
            };
            let fid = field.meta().id;
            let slot = (fid, w.key.clone(), day);
            let current = match totals.get(&slot) {
                Some(&t) => t,
                None => match dict.read().get(w.key.as_ref()) {
                    Some(id) => st
                        .active
                        .event_total(fid, id, day)
                        .or_else(|| st.frozen.event_total(fid, id, day))
                        .map_or_else(|| stored_count(&field, id, day), Ok)?,
                    None => 0,
                },
            };
            let total = current.saturating_add(count);
            totals.insert(slot, total);
            w.cell = Some(Cell::EventDay { day, total });
        }
    }
    Ok(())
}

/// How many times `id` did event `field` on `day` in the stored version.
fn stored_count(field: &FieldRef<'_>, id: u32, day: i32) -> Result<u32> {
    let shard = id >> SHARD_BITS;
    if !field
        .event_day_in(shard, day)?
        .is_some_and(|b| b.contains(id))
    {
        return Ok(0);
    }
    let mut extra = 0u32;
    for (bit, slice) in field.event_count_slices_in(shard, day)? {
        if bit < 32 && slice.contains(id) {
            extra |= 1 << bit;
        }
    }
    Ok(extra.saturating_add(1))
}

/// Applies one logged batch to the delta: keys to ids (adding new users), then each write.
/// Writes to fields that no longer exist are skipped with a warning (the log keeps them).
pub(crate) fn apply_logged(st: &mut RtState, writes: &[LoggedWrite]) -> Result<(usize, u32)> {
    let base = st.base.clone();
    let dict = base.dict.get()?;
    let mut ids = Vec::with_capacity(writes.len());
    let new_users;
    {
        let mut d = dict.write();
        let known = d.end();
        for w in writes {
            let key: KeyRef<'_> = w.key.as_ref();
            ids.push(d.get_or_push(key)?);
        }
        new_users = d.end() - known;
        st.overlay.users = st.overlay.users.max(d.end()).max(base.users());
    }
    for (w, &id) in writes.iter().zip(&ids) {
        let field = match base.field(&w.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(field = %w.path, error = %e, "real-time write to a field without a current version skipped");
                continue;
            }
        };
        let fid = field.meta().id;
        match w.cell {
            // Defensive: appends reach the log as totals. An add replayed from an older log
            // is taken on top of what the delta holds.
            Some(Cell::EventAdd { day, count }) => {
                let current = match st.active.event_total(fid, id, day) {
                    Some(t) => t,
                    None => stored_count(&field, id, day)?,
                };
                let total = current.saturating_add(count);
                let cell = Cell::EventDay { day, total };
                apply(&mut st.overlay, &field, id, Some(&cell))?;
                st.active
                    .events
                    .entry(fid)
                    .or_default()
                    .insert((id, day), total);
            }
            Some(Cell::EventDay { day, total }) => {
                apply(&mut st.overlay, &field, id, w.cell.as_ref())?;
                st.active
                    .events
                    .entry(fid)
                    .or_default()
                    .insert((id, day), total);
            }
            _ => {
                apply(&mut st.overlay, &field, id, w.cell.as_ref())?;
                st.active
                    .fields
                    .entry(fid)
                    .or_default()
                    .insert(id, w.cell.clone());
            }
        }
    }
    Ok((writes.len(), new_users))
}

/// Applies one change of user `id` to the overlay of `field` (a field of the base snapshot).
pub(crate) fn apply(
    overlay: &mut Overlay,
    field: &FieldRef<'_>,
    id: u32,
    cell: Option<&Cell>,
) -> Result<()> {
    let shard = id >> SHARD_BITS;
    let fo = Arc::make_mut(overlay.fields.entry(field.meta().id).or_insert_with(|| {
        Arc::new(FieldOverlay {
            values: Vec::new(),
            base_values: field.values().len(),
            event_days: Vec::new(),
            shards: Vec::new(),
        })
    }));
    if fo.shards.len() <= shard as usize {
        fo.shards.resize(shard as usize + 1, None);
    }
    if fo.shards[shard as usize].is_none() {
        let data = match field.kind() {
            FieldKind::Flag => {
                OverlayData::Flag(Arc::new(field.flag_in(shard)?.cloned().unwrap_or_default()))
            }
            k if k.is_numeric() => OverlayData::Bsi(Default::default()),
            k if k.has_values() => OverlayData::Values(BTreeMap::new()),
            _ => OverlayData::Events(BTreeMap::new()),
        };
        fo.shards[shard as usize] = Some(Arc::new(ShardOverlay {
            changed: croaring::Bitmap::new(),
            data,
        }));
    }
    // The codes of the user's current values, read before the shard overlay is borrowed.
    let old_codes = match field.kind() {
        k if k.has_values() => current_codes(fo, field, shard, id)?,
        _ => Vec::new(),
    };
    if let Some(&Cell::EventDay { day, .. }) = cell {
        if fo.event_days.is_empty() {
            fo.event_days = field.event_days().to_vec();
        }
        if let Err(at) = fo.event_days.binary_search(&day) {
            fo.event_days.insert(at, day);
        }
    }
    let new_codes: Vec<u32> = match cell {
        Some(Cell::Str(s)) => vec![code_for(fo, field, s)],
        Some(Cell::Strs(list)) => list.iter().map(|s| code_for(fo, field, s)).collect(),
        _ => Vec::new(),
    };
    let so = Arc::make_mut(fo.shards[shard as usize].as_mut().expect("set above"));
    so.changed.add(id);
    match (&mut so.data, cell) {
        (OverlayData::Flag(b), Some(Cell::Flag)) => Arc::make_mut(b).add(id),
        (OverlayData::Flag(b), None) => {
            if b.contains(id) {
                Arc::make_mut(b).remove(id)
            }
        }
        (OverlayData::Bsi(p), Some(Cell::Units(v))) => p.record(id, Some(*v)),
        (OverlayData::Bsi(p), None) => p.record(id, None),
        (OverlayData::Events(days), Some(&Cell::EventDay { day, total })) => {
            Arc::make_mut(days.entry(day).or_default()).record(id, total)
        }
        (OverlayData::Values(map), None | Some(Cell::Str(_) | Cell::Strs(_))) => {
            for &c in &old_codes {
                if !new_codes.contains(&c) {
                    Arc::make_mut(value_entry(map, field, shard, c)?).remove(id);
                }
            }
            for &c in &new_codes {
                if !old_codes.contains(&c) {
                    Arc::make_mut(value_entry(map, field, shard, c)?).add(id);
                }
            }
        }
        (_, cell) => {
            return Err(Error::Internal(format!(
                "change {cell:?} does not fit `{}` ({})",
                field.path(),
                field.kind().name()
            )));
        }
    }
    Ok(())
}

/// The merged bitmap of value `code` in the shard overlay, copied from the segment first.
fn value_entry<'m>(
    map: &'m mut BTreeMap<u32, Arc<croaring::Bitmap>>,
    field: &FieldRef<'_>,
    shard: u32,
    code: u32,
) -> Result<&'m mut Arc<croaring::Bitmap>> {
    if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(code) {
        let stored = if (code as usize) < field.values().len() {
            field.value_in(shard, code)?.cloned().unwrap_or_default()
        } else {
            croaring::Bitmap::new()
        };
        slot.insert(Arc::new(stored));
    }
    Ok(map.get_mut(&code).expect("inserted above"))
}

/// The code of `value` in the field overlay, adding it after the stored values if it is new.
fn code_for(fo: &mut FieldOverlay, field: &FieldRef<'_>, value: &str) -> u32 {
    if let Some(c) = field.code_of(value) {
        return c;
    }
    if fo.values.is_empty() {
        fo.values = field.values().to_vec();
    }
    match fo.values[fo.base_values..].iter().position(|v| v == value) {
        Some(i) => (fo.base_values + i) as u32,
        None => {
            fo.values.push(value.to_owned());
            (fo.values.len() - 1) as u32
        }
    }
}

/// The value codes user `id` holds now: from the overlay's bitmaps for the codes it tracks,
/// from the stored column for the others.
fn current_codes(fo: &FieldOverlay, field: &FieldRef<'_>, shard: u32, id: u32) -> Result<Vec<u32>> {
    let so = fo.shards.get(shard as usize).and_then(|s| s.as_deref());
    let tracked = match so.map(|s| &s.data) {
        Some(OverlayData::Values(map)) => Some(map),
        _ => None,
    };
    // Only a user the delta already changed can differ from the stored column.
    let tracked = tracked.filter(|_| so.is_some_and(|s| s.changed.contains(id)));
    let mut out = Vec::new();
    if let Some(map) = tracked {
        out.extend(map.iter().filter(|(_, b)| b.contains(id)).map(|(&c, _)| c));
    }
    let stored: Vec<u32> = match field.value_of(id)? {
        Some(Value::Str(s)) => field.code_of(&s).into_iter().collect(),
        Some(Value::Strs(list)) => list.iter().filter_map(|s| field.code_of(s)).collect(),
        _ => Vec::new(),
    };
    for c in stored {
        if !tracked.is_some_and(|m| m.contains_key(&c)) {
            out.push(c);
        }
    }
    Ok(out)
}
