//! Durable storage: the files of a database and how they are written, checked and read.
//!
//! - [`fs`]: atomic file replacement and directory fsync, the envelope (magic, version, checksum)
//!   shared by small metadata files.
//! - [`mapped`]: the only `unsafe` of the storage layer: memory maps and zero-copy bitmap views.
//! - [`segment`]: immutable per-shard segment files holding bitmaps, BSI slices and columns.
//! - [`manifest`]: the per-table manifest naming every live file, replaced atomically.

pub(crate) mod fs;
pub(crate) mod manifest;
pub(crate) mod mapped;
pub(crate) mod segment;

/// Format version written by this build, shared by every file kind of the engine.
///
/// Version 2 added event fields (segment roles 12 and 13) and the table's time options in the
/// manifest; version 3 one-byte code columns of enum fields (segment role 14). Files of
/// earlier versions are read as they are.
pub const FORMAT_VERSION: u32 = 3;
/// Oldest format version this build can read.
pub const OLDEST_SUPPORTED_FORMAT_VERSION: u32 = 1;

/// The checksum used by every file: XXH3-64 with seed 0.
#[inline]
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
