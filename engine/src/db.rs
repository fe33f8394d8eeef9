//! The database: a directory of tables, locked against a second process.
//!
//! ```text
//! <dir>/LOCK             held (advisory lock) while a process has the database open
//! <dir>/tables/<name>/   one directory per table (see `table`)
//! <dir>/trash/           dropped tables on their way out; emptied at open
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::validate_table_name;
use crate::error::{Error, Result};
use crate::ids::KeyKind;
use crate::storage::{fs, manifest};
use crate::table::Table;

/// Options of a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Versions kept per field; older ones are removed with their files (default 7).
    pub keep_versions: u32,
    /// Load each table's id dictionary on a background thread as soon as the table opens
    /// (default true). When false, it loads on the first key lookup.
    pub warm_dictionary: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keep_versions: 7,
            warm_dictionary: true,
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
            let table = Table::open(&path, &name, options.warm_dictionary)?;
            tables.insert(name, Arc::new(table));
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
        )?);
        fs::sync_dir(&tables_dir)?;
        tables.insert(name.to_owned(), table.clone());
        Ok(table)
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
