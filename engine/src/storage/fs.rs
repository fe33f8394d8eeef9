//! File-system primitives: atomic replacement, directory fsync, and the envelope of small files.
//!
//! # Envelope layout (manifests, id-dictionary chunks)
//! ```text
//! offset  size  field
//! 0       8     magic (file kind, e.g. b"PRTMANI1")
//! 8       4     format version (u32 LE)
//! 12      4     flags (u32 LE; bit 0 = body is zstd-compressed)
//! 16      8     stored body length in bytes (u64 LE)
//! 24      n     body
//! 24+n    8     XXH3-64 of bytes [0, 24+n) (u64 LE)
//! ```
//! A file shorter than 32 bytes, with another magic, an unknown version, a length that does not
//! match the file size or a bad checksum is reported as corrupt and never interpreted.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{FORMAT_VERSION, OLDEST_SUPPORTED_FORMAT_VERSION, checksum};
use crate::error::{Error, Result};

const HEADER_LEN: usize = 24;
const FLAG_ZSTD: u32 = 1;

/// Wraps `body` in an envelope with `magic`, compressing it with zstd when `compress` is set.
pub(crate) fn seal(magic: &[u8; 8], body: &[u8], compress: bool) -> Vec<u8> {
    let (flags, stored) = if compress {
        let packed = zstd::bulk::compress(body, 3).expect("zstd compression of memory cannot fail");
        (FLAG_ZSTD, packed)
    } else {
        (0, body.to_vec())
    };
    let mut out = Vec::with_capacity(HEADER_LEN + stored.len() + 8);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    out.extend_from_slice(&stored);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Validates an envelope read from `path` and returns its (decompressed) body.
pub(crate) fn unseal(
    path: &Path,
    magic: &[u8; 8],
    bytes: &[u8],
    max_body: usize,
) -> Result<Vec<u8>> {
    if bytes.len() < HEADER_LEN + 8 {
        return Err(Error::corrupt(
            path,
            format!("file too short ({} bytes)", bytes.len()),
        ));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(path, "wrong magic number"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(OLDEST_SUPPORTED_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedFormatVersion {
            path: path.to_path_buf(),
            found: version,
            oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
            current: FORMAT_VERSION,
        });
    }
    let flags = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if len != (bytes.len() - HEADER_LEN - 8) as u64 {
        return Err(Error::corrupt(
            path,
            format!("body length {len} does not match file size {}", bytes.len()),
        ));
    }
    let end = bytes.len() - 8;
    let stored_sum = u64::from_le_bytes(bytes[end..].try_into().expect("8 bytes"));
    if checksum(&bytes[..end]) != stored_sum {
        return Err(Error::corrupt(path, "checksum mismatch"));
    }
    let body = &bytes[HEADER_LEN..end];
    if flags & FLAG_ZSTD != 0 {
        // The frame header states the decompressed size; check it before allocating.
        let size = match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(Some(n)) if n <= max_body as u64 => n as usize,
            Ok(Some(n)) => {
                return Err(Error::corrupt(
                    path,
                    format!("body of {n} bytes exceeds the limit"),
                ));
            }
            _ => return Err(Error::corrupt(path, "zstd frame without a valid size")),
        };
        zstd::bulk::decompress(body, size)
            .map_err(|e| Error::corrupt(path, format!("zstd body does not decompress: {e}")))
    } else {
        Ok(body.to_vec())
    }
}

/// Reads a whole file, mapping errors to [`Error::Io`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` and fsyncs the file (not the directory).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Replaces `path` atomically with `bytes`: write a temporary, fsync it, rename it over the
/// target, fsync the directory. A crash at any point leaves either the old or the new file.
pub(crate) fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"PRTTEST1";

    #[test]
    fn sealed_bodies_round_trip_and_reject_damage() {
        let body: Vec<u8> = (0..5000u32).flat_map(|i| (i % 17).to_le_bytes()).collect();
        for compress in [false, true] {
            let file = seal(MAGIC, &body, compress);
            let p = Path::new("x");
            assert_eq!(unseal(p, MAGIC, &file, 1 << 20).unwrap(), body);
            for i in [0, 9, 20, file.len() / 2, file.len() - 1] {
                let mut bad = file.clone();
                bad[i] ^= 0x40;
                assert!(unseal(p, MAGIC, &bad, 1 << 20).is_err(), "flip at {i}");
            }
            for cut in [0, 10, 31, file.len() - 1] {
                assert!(
                    unseal(p, MAGIC, &file[..cut], 1 << 20).is_err(),
                    "cut at {cut}"
                );
            }
            assert!(unseal(p, b"PRTOTHER", &file, 1 << 20).is_err());
        }
    }

    #[test]
    fn unknown_versions_are_typed_errors() {
        let mut file = seal(MAGIC, b"abc", false);
        file[8..12].copy_from_slice(&99u32.to_le_bytes());
        let end = file.len() - 8;
        let sum = checksum(&file[..end]);
        file[end..].copy_from_slice(&sum.to_le_bytes());
        match unseal(Path::new("x"), MAGIC, &file, 1024) {
            Err(Error::UnsupportedFormatVersion { found: 99, .. }) => {}
            other => panic!("expected a version error, got {other:?}"),
        }
    }

    #[test]
    fn atomic_replacement_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MANIFEST");
        replace_atomically(&p, b"one").unwrap();
        replace_atomically(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }
}
