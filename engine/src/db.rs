//! The database: a directory of tables, locked against a second process.
//!
//! ```text
//! <dir>/LOCK             held (advisory lock) while a process has the database open
//! <dir>/tables/<name>/   one directory per table (see `table`)
//! <dir>/trash/           dropped tables on their way out; emptied at open
//! ```
//!
//! A backup ([`Database::backup`]) is the same layout plus a `BACKUP` file written last, so an
//! interrupted backup is recognisable; [`Database::restore`] refuses a directory without it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::validate_table_name;
use crate::error::{Error, Result};
use crate::ids::KeyKind;
use crate::realtime::{RealtimeOptions, WalSync};
use crate::storage::{fs, manifest};
use crate::table::{BackupStats, Table, copy_synced, link_or_copy};

/// The file a complete backup ends with.
const BACKUP_MARKER: &str = "BACKUP";

/// Options of a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Versions kept per field; older ones are removed with their files (default 7).
    pub keep_versions: u32,
    /// Load each table's id dictionary on a background thread as soon as the table opens
    /// (default true). When false, it loads on the first key lookup.
    pub warm_dictionary: bool,
    /// When real-time writes are synced to disk (default: every group commit).
    pub wal_sync: WalSync,
    /// Pending real-time changes per table that start a background compaction (default
    /// 1,000,000; 0: only [`Table::compact`] compacts).
    pub compact_after: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_versions: 7,
            warm_dictionary: true,
            wal_sync: WalSync::default(),
            compact_after: 1_000_000,
        }
    }
}

impl Options {
    fn realtime(&self) -> RealtimeOptions {
        RealtimeOptions {
            sync: self.wal_sync,
            compact_after: self.compact_after,
        }
    }
}

/// An open Portrait database.
#[derive(Debug)]
pub struct Database {
    dir: PathBuf,
    options: Options,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    _lock: File,
}

impl Database {
    /// Opens the database in `dir`, creating it if needed, with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the database in `dir`, creating it if needed.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let tables_dir = dir.join("tables");
        std::fs::create_dir_all(&tables_dir).map_err(|e| Error::io(&tables_dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let trash = dir.join("trash");
        if trash.exists() {
            std::fs::remove_dir_all(&trash).map_err(|e| Error::io(&trash, e))?;
        }
        let mut tables = BTreeMap::new();
        for entry in std::fs::read_dir(&tables_dir).map_err(|e| Error::io(&tables_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&tables_dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = entry.path();
            if !path.join(manifest::FILE_NAME).exists() {
                // A table whose creation did not reach its first manifest.
                tracing::warn!(dir = %path.display(), "removing incomplete table directory");
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let table = Arc::new(Table::open(
                &path,
                &name,
                options.warm_dictionary,
                options.realtime(),
            )?);
            table.set_self();
            tables.insert(name, table);
        }
        Ok(Self {
            dir,
            options,
            tables: RwLock::new(tables),
            _lock: lock,
        })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of all tables, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.tables.read().keys().cloned().collect()
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Result<Arc<Table>> {
        self.tables
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(name.to_owned()))
    }

    /// Creates an empty table whose users are identified by keys of `kind`.
    pub fn create_table(&self, name: &str, kind: KeyKind) -> Result<Arc<Table>> {
        validate_table_name(name)?;
        let mut tables = self.tables.write();
        if tables.contains_key(name) {
            return Err(Error::TableExists(name.to_owned()));
        }
        let tables_dir = self.dir.join("tables");
        let table = Arc::new(Table::create(
            &tables_dir.join(name),
            name,
            kind,
            self.options.keep_versions,
            self.options.realtime(),
        )?);
        table.set_self();
        fs::sync_dir(&tables_dir)?;
        tables.insert(name.to_owned(), table.clone());
        Ok(table)
    }

    /// Writes a consistent online backup of every table to `dest`, which must not exist or
    /// be empty. Immutable files are hard-linked when `dest` is on the same file system (so a
    /// backup costs little space until the database moves on), the rest is copied. Each table
    /// is captured at one instant; readers are never blocked, and writers of a table wait only
    /// while its files are linked and its log copied.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupStats> {
        let dest = dest.as_ref();
        prepare_empty_dir(dest)?;
        let tables = self.tables.read();
        let mut stats = BackupStats::default();
        for (name, table) in tables.iter() {
            stats.merge(table.backup_into(&dest.join("tables").join(name))?);
        }
        let tables_dir = dest.join("tables");
        std::fs::create_dir_all(&tables_dir).map_err(|e| Error::io(&tables_dir, e))?;
        fs::sync_dir(&tables_dir)?;
        let marker = format!(
            "portrait backup\nformat {}\ncreated_ms {}\ntables {}\n",
            crate::storage::FORMAT_VERSION,
            crate::now_ms(),
            tables.keys().cloned().collect::<Vec<_>>().join(",")
        );
        fs::write_synced(&dest.join(BACKUP_MARKER), marker.as_bytes())?;
        fs::sync_dir(dest)?;
        Ok(stats)
    }

    /// Restores the backup in `backup` into the data directory `dir`, which must not exist or
    /// be empty (a restore never overwrites a database). Immutable files are hard-linked when
    /// possible, the log is copied. Open the database afterwards with [`Database::open`].
    pub fn restore(backup: impl AsRef<Path>, dir: impl AsRef<Path>) -> Result<BackupStats> {
        let (backup, dir) = (backup.as_ref(), dir.as_ref());
        if !backup.join(BACKUP_MARKER).is_file() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a complete Portrait backup (no {BACKUP_MARKER} file)",
                backup.display()
            )));
        }
        prepare_empty_dir(dir)?;
        // Restore beside the target and rename at the end, so that a restore that fails
        // halfway leaves the target empty (and a retry possible), never half a database.
        let name = dir
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} names no directory", dir.display())))?
            .to_string_lossy()
            .into_owned();
        let staging = dir.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        let result = restore_into(backup, &staging).and_then(|stats| {
            std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&staging, dir).map_err(|e| Error::io(&staging, e))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fs::sync_dir(parent)?;
            Ok(stats)
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            let _ = std::fs::create_dir_all(dir);
        }
        result
    }

    /// Drops a table and its files. Readers holding its snapshots finish undisturbed.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let mut tables = self.tables.write();
        if !tables.contains_key(name) {
            return Err(Error::TableNotFound(name.to_owned()));
        }
        let trash = self.dir.join("trash");
        std::fs::create_dir_all(&trash).map_err(|e| Error::io(&trash, e))?;
        let from = self.dir.join("tables").join(name);
        let to = trash.join(format!("{name}-{}", crate::now_ms()));
        std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
        fs::sync_dir(&self.dir.join("tables"))?;
        tables.remove(name);
        if let Err(e) = std::fs::remove_dir_all(&to) {
            tracing::warn!(dir = %to.display(), error = %e, "dropped table files remain until next open");
        }
        Ok(())
    }
}

/// Creates `dir` if needed and checks that it is empty.
fn prepare_empty_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty: a backup or restore writes only into a new or empty directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Copies the tables of `backup` into the new directory `dir`: immutable files hard-linked
/// where possible, write-ahead logs copied.
fn restore_into(backup: &Path, dir: &Path) -> Result<BackupStats> {
    let mut stats = BackupStats::default();
    let from_tables = backup.join("tables");
    let to_tables = dir.join("tables");
    std::fs::create_dir_all(&to_tables).map_err(|e| Error::io(&to_tables, e))?;
    for entry in std::fs::read_dir(&from_tables).map_err(|e| Error::io(&from_tables, e))? {
        let entry = entry.map_err(|e| Error::io(&from_tables, e))?;
        let to = to_tables.join(entry.file_name());
        std::fs::create_dir(&to).map_err(|e| Error::io(&to, e))?;
        for file in std::fs::read_dir(entry.path()).map_err(|e| Error::io(entry.path(), e))? {
            let file = file.map_err(|e| Error::io(entry.path(), e))?;
            let name = file.file_name();
            let target = to.join(&name);
            let grows = name.to_str().is_some_and(|n| n.starts_with("wal-"));
            let (bytes, linked) = if grows {
                copy_synced(&file.path(), &target)?
            } else {
                link_or_copy(&file.path(), &target)?
            };
            stats.files += 1;
            stats.linked += u64::from(linked);
            stats.bytes += bytes;
        }
        fs::sync_dir(&to)?;
    }
    fs::sync_dir(&to_tables)?;
    fs::sync_dir(dir)?;
    Ok(stats)
}
