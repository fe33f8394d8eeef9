//! Tables: one universe of users, its files, its current snapshot and its single writer.
//!
//! A table lives in its own directory:
//! ```text
//! <table>/MANIFEST                 the live state (storage::manifest)
//! <table>/seg-<id>-<shard>.seg     segments, one per shard per load (storage::segment)
//! <table>/ids-<id>.ids             id-dictionary chunks, one per load adding users (ids::chunk)
//! <table>/wal-<n>.log              the real-time write-ahead log (realtime::wal)
//! ```
//! Readers take [`Table::snapshot`] (an `Arc` swapped atomically, never blocked by a writer);
//! one bulk writer at a time holds the table's writer lock for the duration of a [`Load`] (or a
//! compaction). Real-time writes ([`Table::write`]) take only the real-time commit lock, so they
//! go on during loads and compactions.

mod dict;
mod load;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use load::{Load, LoadField, LoadSummary};
pub(crate) use snapshot::{CodeColumn, EventBlob, IntColumn};
pub use snapshot::{FieldRef, KeyFinder, TableSnapshot, Value};

use crate::error::{Error, Result};
use crate::ids::KeyKind;
use crate::realtime::CompactSummary;
use crate::realtime::{self, DeltaStats, Realtime, RealtimeOptions, RtState, Write, WriteSummary};
use crate::storage::fs;
use crate::storage::manifest::{self, Manifest};
use crate::storage::segment::{self, Segment};
use dict::LiveDict;

#[cfg(test)]
pub(crate) use load::fail_next_commit_at;

/// One table of a [`crate::Database`].
pub struct Table {
    name: Arc<str>,
    dir: PathBuf,
    current: ArcSwap<TableSnapshot>,
    /// Open segments by `(shard, file id)`, shared by every snapshot that names them.
    segments: Mutex<HashMap<(u32, u64), Arc<Segment>>>,
    writer: Mutex<()>,
    pub(crate) rt: Realtime,
    /// This table, for the background compaction thread (set by the database).
    this: std::sync::OnceLock<std::sync::Weak<Table>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Table {
    /// Creates the files of a new, empty table in `dir` (which must not exist yet).
    pub(crate) fn create(
        dir: &Path,
        name: &str,
        kind: KeyKind,
        keep_versions: u32,
        rt: RealtimeOptions,
    ) -> Result<Self> {
        std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
        let m = Manifest::new(kind, crate::now_ms(), keep_versions);
        fs::replace_atomically(&dir.join(manifest::FILE_NAME), &m.encode())?;
        Self::open(dir, name, false, rt)
    }

    /// Opens a table: reads its manifest and segment metadata, removes unreferenced files.
    /// Costs time proportional to the metadata; the id dictionary loads in the background.
    pub(crate) fn open(
        dir: &Path,
        name: &str,
        warm_dictionary: bool,
        rt: RealtimeOptions,
    ) -> Result<Self> {
        let mpath = dir.join(manifest::FILE_NAME);
        let m = Manifest::decode(&mpath, &fs::read(&mpath)?)?;
        let mut open = HashMap::new();
        for (shard, id) in m.segment_files() {
            let path = dir.join(segment::file_name(id, shard));
            let seg = Segment::open(&path)?;
            if seg.shard() != shard || seg.id() != id {
                return Err(Error::corrupt(
                    &path,
                    "segment header names another shard or id",
                ));
            }
            open.insert((shard, id), Arc::new(seg));
        }
        let dict = Arc::new(LiveDict::new(
            m.key_kind,
            dir.to_path_buf(),
            m.chunks.clone(),
        ));
        let name: Arc<str> = Arc::from(name);
        let snapshot = Arc::new(TableSnapshot::build(name.clone(), m, &open, dict.clone())?);
        let state = realtime::recover(dir, snapshot, rt.sync)?;
        let table = Self {
            name,
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(state.visible()),
            segments: Mutex::new(open),
            writer: Mutex::new(()),
            rt: Realtime::new(state, rt),
            this: std::sync::OnceLock::new(),
        };
        table.remove_unreferenced();
        if warm_dictionary {
            // Load the dictionary off the caller's thread; lookups wait for it if they come first.
            let _ = std::thread::Builder::new()
                .name(format!("portrait-dict-{}", table.name))
                .spawn(move || {
                    let _ = dict.get();
                });
        }
        Ok(table)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current consistent snapshot. Cheap; never blocks on writers.
    pub fn snapshot(&self) -> Arc<TableSnapshot> {
        self.current.load_full()
    }

    /// Starts a bulk load of a new version labelled `label`, waiting for any other writer.
    /// A version with the same label is replaced by this one.
    pub fn load(&self, label: &str) -> Result<Load<'_>> {
        Load::new(self, self.writer.lock(), label)
    }

    /// Removes version `label` of field `path`. The field's other versions stay.
    pub fn drop_version(&self, path: &str, label: &str) -> Result<()> {
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let mut m = (*snap.manifest).clone();
        let f = m
            .fields
            .iter_mut()
            .find(|f| f.meta.spec.path == path)
            .ok_or_else(|| Error::FieldNotFound {
                path: path.to_owned(),
                suggestion: None,
            })?;
        let before = f.versions.len();
        f.versions.retain(|v| v.info.label != label);
        if f.versions.len() == before {
            return Err(Error::VersionNotFound {
                path: path.to_owned(),
                label: label.to_owned(),
            });
        }
        m.generation += 1;
        let mut open = self.open_segments();
        let live = m.segment_files();
        open.retain(|k, _| live.contains(k));
        let next = TableSnapshot::build(self.name.clone(), m, &open, snap.dict.clone())?;
        self.write_manifest(&next.manifest)?;
        self.publish(next, open);
        self.remove_unreferenced();
        Ok(())
    }

    /// Sets the time zone event days are counted in (an offset from UTC in minutes, within
    /// ±18 hours) and how many days of each event are kept (0: all). Applies to loads from now
    /// on: days already stored keep their numbers.
    pub fn set_time_options(&self, utc_offset_minutes: i32, event_horizon_days: u32) -> Result<()> {
        if utc_offset_minutes.abs() > manifest::MAX_UTC_OFFSET_MINUTES {
            return Err(Error::InvalidArgument(format!(
                "UTC offset {utc_offset_minutes} minutes is outside ±18 hours"
            )));
        }
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let mut m = (*snap.manifest).clone();
        m.utc_offset_minutes = utc_offset_minutes;
        m.event_horizon_days = event_horizon_days;
        m.generation += 1;
        let open = self.open_segments();
        let next = TableSnapshot::build(self.name.clone(), m, &open, snap.dict.clone())?;
        self.write_manifest(&next.manifest)?;
        self.publish(next, open);
        Ok(())
    }

    pub(crate) fn open_segments(&self) -> HashMap<(u32, u64), Arc<Segment>> {
        self.segments.lock().clone()
    }

    pub(crate) fn write_manifest(&self, m: &Manifest) -> Result<()> {
        fs::replace_atomically(&self.dir.join(manifest::FILE_NAME), &m.encode())
    }

    /// Publishes a new snapshot of the stored versions, with the real-time delta merged over it.
    pub(crate) fn publish(&self, snapshot: TableSnapshot, open: HashMap<(u32, u64), Arc<Segment>>) {
        let mut st = self.rt.state.lock();
        self.publish_locked(&mut st, snapshot, open);
    }

    /// [`Table::publish`] for a caller already holding the real-time commit lock.
    pub(crate) fn publish_locked(
        &self,
        st: &mut RtState,
        snapshot: TableSnapshot,
        open: HashMap<(u32, u64), Arc<Segment>>,
    ) {
        *self.segments.lock() = open;
        st.base = Arc::new(snapshot);
        st.rebuild_overlay();
        self.current.store(Arc::new(st.visible()));
    }

    pub(crate) fn set_self(self: &Arc<Self>) {
        let _ = self.this.set(Arc::downgrade(self));
    }

    /// Applies a batch of real-time writes atomically and durably: when this returns `Ok`, the
    /// batch is in the write-ahead log (synced, unless the database was opened with
    /// [`crate::WalSync::Os`]) and visible to every snapshot taken from now on. A batch with
    /// one bad write is rejected whole, before anything is logged. Concurrent callers share one
    /// log sync (group commit).
    pub fn write(&self, writes: &[Write]) -> Result<WriteSummary> {
        let logged = realtime::validate(&self.snapshot(), writes)?;
        if logged.is_empty() {
            return Ok(WriteSummary {
                writes: 0,
                new_users: 0,
                seq: self.rt.state.lock().seq,
            });
        }
        let summary =
            realtime::commit(&self.rt, logged, &|snap| self.current.store(Arc::new(snap)))?;
        self.maybe_compact_in_background();
        Ok(summary)
    }

    /// The size of the real-time delta.
    pub fn delta_stats(&self) -> DeltaStats {
        self.rt.state.lock().stats()
    }

    /// Folds the real-time delta into new segments now (waiting for a running compaction or
    /// bulk load first). Real-time writes go on meanwhile.
    pub fn compact(&self) -> Result<CompactSummary> {
        realtime::compact::run(self)
    }

    fn maybe_compact_in_background(&self) {
        let threshold = self.rt.options.compact_after;
        if threshold == 0 {
            return;
        }
        use std::sync::atomic::Ordering;
        {
            let st = self.rt.state.lock();
            if st.active.len() < threshold && st.wal.len() < realtime::COMPACT_LOG_BYTES {
                return;
            }
        }
        let Some(table) = self.this.get().and_then(|w| w.upgrade()) else {
            return;
        };
        if self
            .rt
            .scheduled
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name(format!("portrait-compact-{}", self.name))
            .spawn(move || {
                if let Err(e) = table.compact() {
                    tracing::error!(table = %table.name, error = %e, "background compaction failed");
                }
                table.rt.scheduled.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.rt.scheduled.store(false, Ordering::Release);
        }
    }

    /// Copies a consistent image of the table into the new directory `dest`: the manifest,
    /// its segment and id files (hard-linked when the file system allows: they never change),
    /// and the write-ahead log (copied: it grows). Loads, compactions and real-time commits
    /// wait meanwhile; readers do not.
    pub(crate) fn backup_into(&self, dest: &Path) -> Result<BackupStats> {
        let _w = self.writer.lock();
        let st = self.rt.state.lock();
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        let m = &st.base.manifest;
        let mut stats = BackupStats::default();
        let mut immutable: Vec<String> = m
            .segment_files()
            .into_iter()
            .map(|(shard, id)| segment::file_name(id, shard))
            .collect();
        immutable.extend(
            m.chunks
                .iter()
                .map(|c| crate::ids::chunk::file_name(c.file_id)),
        );
        for name in immutable {
            stats.add(link_or_copy(&self.dir.join(&name), &dest.join(&name))?);
        }
        let mut copied = vec![manifest::FILE_NAME.to_owned()];
        copied.extend(
            realtime::wal::list(&self.dir)?
                .into_iter()
                .map(realtime::wal::file_name),
        );
        for name in copied {
            stats.add(copy_synced(&self.dir.join(&name), &dest.join(&name))?);
        }
        drop(st);
        fs::sync_dir(dest)?;
        Ok(stats)
    }

    /// The table's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Swaps in the snapshot `st` describes (caller holds the real-time commit lock).
    pub(crate) fn store_visible(&self, st: &RtState) {
        self.current.store(Arc::new(st.visible()));
    }

    /// Deletes segment and chunk files the current manifest does not name (best effort: a file
    /// that cannot be removed now is retried at the next open).
    pub(crate) fn remove_unreferenced(&self) {
        let snap = self.snapshot();
        let live_segments = snap.manifest.segment_files();
        let live_chunks: std::collections::HashSet<u64> =
            snap.manifest.chunks.iter().map(|c| c.file_id).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let keep = if let Some(rest) = name
                .strip_prefix("seg-")
                .and_then(|r| r.strip_suffix(".seg"))
            {
                parse_segment_name(rest).is_some_and(|k| live_segments.contains(&k))
            } else if let Some(hex) = name
                .strip_prefix("ids-")
                .and_then(|r| r.strip_suffix(".ids"))
            {
                u64::from_str_radix(hex, 16).is_ok_and(|id| live_chunks.contains(&id))
            } else {
                !name.ends_with(".tmp")
            };
            if !keep {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::debug!(file = %entry.path().display(), "removed unreferenced file")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "could not remove unreferenced file")
                    }
                }
            }
        }
    }
}

/// Files and bytes a backup or restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupStats {
    /// Files written.
    pub files: u64,
    /// Of those, files hard-linked rather than copied.
    pub linked: u64,
    /// Bytes of all files.
    pub bytes: u64,
}

impl BackupStats {
    fn add(&mut self, (bytes, linked): (u64, bool)) {
        self.files += 1;
        self.linked += u64::from(linked);
        self.bytes += bytes;
    }

    pub(crate) fn merge(&mut self, other: BackupStats) {
        self.files += other.files;
        self.linked += other.linked;
        self.bytes += other.bytes;
    }
}

/// Hard-links `from` to `to`, or copies it (synced) where links are impossible.
/// Returns the size and whether it linked.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<(u64, bool)> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            let len = std::fs::metadata(to).map_err(|e| Error::io(to, e))?.len();
            Ok((len, true))
        }
        Err(_) => copy_synced(from, to),
    }
}

/// Copies `from` to `to` and syncs the copy.
pub(crate) fn copy_synced(from: &Path, to: &Path) -> Result<(u64, bool)> {
    let len = std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(to, e))?;
    Ok((len, false))
}

fn parse_segment_name(rest: &str) -> Option<(u32, u64)> {
    let (id, shard) = rest.split_once('-')?;
    Some((shard.parse().ok()?, u64::from_str_radix(id, 16).ok()?))
}
