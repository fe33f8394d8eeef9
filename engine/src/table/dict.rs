//! The live id dictionary of a table: loaded from its chunk files once, then appended by loads.
//!
//! Loading reads every chunk, so it costs time proportional to the number of users. It is not
//! done when a table is opened (opening reads metadata only): a background thread starts it, and
//! the first key lookup waits for it if it has not finished.

use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::ids::{IdDictionary, KeyKind, chunk};
use crate::storage::manifest::ChunkRef;

#[derive(Debug)]
pub(crate) struct LiveDict {
    kind: KeyKind,
    dir: PathBuf,
    chunks: Vec<ChunkRef>,
    cell: OnceLock<std::result::Result<RwLock<IdDictionary>, String>>,
}

impl LiveDict {
    pub(crate) fn new(kind: KeyKind, dir: PathBuf, chunks: Vec<ChunkRef>) -> Self {
        Self {
            kind,
            dir,
            chunks,
            cell: OnceLock::new(),
        }
    }

    /// How the keys are typed.
    pub(crate) fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The dictionary, loading it on first use.
    pub(crate) fn get(&self) -> Result<&RwLock<IdDictionary>> {
        self.cell
            .get_or_init(|| self.load().map(RwLock::new).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|msg| Error::corrupt(&self.dir, format!("id dictionary: {msg}")))
    }

    fn load(&self) -> Result<IdDictionary> {
        let mut dict = IdDictionary::new(self.kind, 0);
        for c in &self.chunks {
            let path = self.dir.join(chunk::file_name(c.file_id));
            chunk::read_into(&path, c.first, c.count, &mut dict)?;
        }
        Ok(dict)
    }
}
