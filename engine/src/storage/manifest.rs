//! The table manifest: the one file that says which data is live.
//!
//! Every change to a table (a load, a dropped version) writes a complete new manifest and
//! replaces the old one atomically (`fs::replace_atomically`). Files that no manifest names are
//! garbage: leftovers of an interrupted load, removed when the table is opened.
//!
//! # Layout (format version 1)
//! An envelope (see `storage::fs`) with magic `b"PRTMANI1"`, uncompressed body:
//! ```text
//! u64 generation        incremented by every published change
//! u8  key kind          1 = string, 2 = u64
//! i64 created (ms)
//! u32 versions kept per field
//! u32 user count        ids 0..count are assigned
//! u64 next file id
//! u32 next field id
//! u32 chunk count, then per id-dictionary chunk: u64 file id, u32 first id, u32 key count
//! u32 field count, then per field:
//!     u32 id, str path, u8 kind, u8 decimal scale, str description, str owner,
//!     u8 freshness (0 offline, 1 realtime), str sensitivity, i64 created ms, i64 updated ms,
//!     u32 version count, then per version (oldest first):
//!         str label, i64 created ms, u64 users, u64 distinct, u64 bytes,
//!         u32 value count, then per value: str   (sorted; value code = position)
//!         u32 segment count, then per segment: u32 shard, u64 file id
//! i32 UTC offset (minutes) of the table's days    (format version 2; absent in 1: 0)
//! u32 event horizon (days kept per event, 0 = all) (format version 2; absent in 1: 0)
//! ```
//! Strings are a u32 byte length and UTF-8 bytes.

use std::path::Path;

use crate::catalog::{FieldKind, FieldMeta, FieldSpec, Freshness, VersionInfo};
use crate::codec::{DecodeError, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::ids::KeyKind;
use crate::storage::fs;

const MAGIC: &[u8; 8] = b"PRTMANI1";
/// The widest UTC offset a table's time zone may have (±18 hours, as in ISO 8601).
pub(crate) const MAX_UTC_OFFSET_MINUTES: i32 = 18 * 60;
/// Name of the manifest file in a table directory.
pub(crate) const FILE_NAME: &str = "MANIFEST";

/// A reference to an id-dictionary chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub file_id: u64,
    pub first: u32,
    pub count: u32,
}

/// A version of a field as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRecord {
    pub info: VersionInfo,
    /// Sorted value dictionary (enum and set fields); a value's code is its position.
    pub values: Vec<String>,
    /// `(shard, segment file id)` for each shard holding data of this version.
    pub segments: Vec<(u32, u64)>,
}

/// A field as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRecord {
    pub meta: FieldMeta,
    /// Oldest first; the last is the current version.
    pub versions: Vec<VersionRecord>,
}

/// The decoded manifest of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub key_kind: KeyKind,
    pub created_ms: i64,
    pub keep_versions: u32,
    pub users: u32,
    pub next_file_id: u64,
    pub next_field_id: u32,
    pub chunks: Vec<ChunkRef>,
    pub fields: Vec<FieldRecord>,
    /// Offset from UTC, in minutes, of the time zone in which event days are counted.
    pub utc_offset_minutes: i32,
    /// Days of events kept, counting back from each event's newest day (0: all).
    pub event_horizon_days: u32,
}

impl Manifest {
    pub(crate) fn new(key_kind: KeyKind, created_ms: i64, keep_versions: u32) -> Self {
        Self {
            generation: 0,
            key_kind,
            created_ms,
            keep_versions,
            users: 0,
            next_file_id: 1,
            next_field_id: 1,
            chunks: Vec::new(),
            fields: Vec::new(),
            utc_offset_minutes: 0,
            event_horizon_days: 0,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.generation);
        e.u8(self.key_kind.to_u8());
        e.i64(self.created_ms);
        e.u32(self.keep_versions);
        e.u32(self.users);
        e.u64(self.next_file_id);
        e.u32(self.next_field_id);
        e.u32(self.chunks.len() as u32);
        for c in &self.chunks {
            e.u64(c.file_id);
            e.u32(c.first);
            e.u32(c.count);
        }
        e.u32(self.fields.len() as u32);
        for f in &self.fields {
            let m = &f.meta;
            e.u32(m.id);
            e.str(&m.spec.path);
            let (kind, scale) = m.spec.kind.code();
            e.u8(kind);
            e.u8(scale);
            e.str(&m.spec.description);
            e.str(&m.spec.owner);
            e.u8(match m.spec.freshness {
                Freshness::Offline => 0,
                Freshness::Realtime => 1,
            });
            e.str(&m.spec.sensitivity);
            e.i64(m.created_ms);
            e.i64(m.updated_ms);
            e.u32(f.versions.len() as u32);
            for v in &f.versions {
                e.str(&v.info.label);
                e.i64(v.info.created_ms);
                e.u64(v.info.users);
                e.u64(v.info.distinct);
                e.u64(v.info.bytes);
                e.u32(v.values.len() as u32);
                for s in &v.values {
                    e.str(s);
                }
                e.u32(v.segments.len() as u32);
                for &(shard, file) in &v.segments {
                    e.u32(shard);
                    e.u64(file);
                }
            }
        }
        e.i32(self.utc_offset_minutes);
        e.u32(self.event_horizon_days);
        fs::seal(MAGIC, &e.buf, false)
    }

    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let body = fs::unseal(path, MAGIC, bytes, bytes.len())?;
        Self::decode_body(&body).map_err(|e| Error::corrupt(path, e.0))
    }

    fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(body);
        let generation = d.u64()?;
        let key_kind = KeyKind::from_u8(d.u8()?).ok_or(DecodeError("unknown key kind".into()))?;
        let created_ms = d.i64()?;
        let keep_versions = d.u32()?;
        let users = d.u32()?;
        let next_file_id = d.u64()?;
        let next_field_id = d.u32()?;
        let n = d.count(16)?;
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkRef {
                file_id: d.u64()?,
                first: d.u32()?,
                count: d.u32()?,
            });
        }
        let n = d.count(40)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let id = d.u32()?;
            let path = d.str()?;
            let (kind, scale) = (d.u8()?, d.u8()?);
            let kind = FieldKind::from_code(kind, scale)
                .ok_or_else(|| DecodeError(format!("unknown kind {kind} of field `{path}`")))?;
            let description = d.str()?;
            let owner = d.str()?;
            let freshness = match d.u8()? {
                0 => Freshness::Offline,
                1 => Freshness::Realtime,
                other => return Err(DecodeError(format!("unknown freshness {other}"))),
            };
            let sensitivity = d.str()?;
            let created_ms = d.i64()?;
            let updated_ms = d.i64()?;
            let nv = d.count(44)?;
            let mut versions = Vec::with_capacity(nv);
            for _ in 0..nv {
                let label = d.str()?;
                let info = VersionInfo {
                    label,
                    created_ms: d.i64()?,
                    users: d.u64()?,
                    distinct: d.u64()?,
                    bytes: d.u64()?,
                };
                let nvals = d.count(4)?;
                let mut values = Vec::with_capacity(nvals);
                for _ in 0..nvals {
                    values.push(d.str()?);
                }
                let nseg = d.count(12)?;
                let mut segments = Vec::with_capacity(nseg);
                for _ in 0..nseg {
                    segments.push((d.u32()?, d.u64()?));
                }
                versions.push(VersionRecord {
                    info,
                    values,
                    segments,
                });
            }
            fields.push(FieldRecord {
                meta: FieldMeta {
                    id,
                    spec: FieldSpec {
                        path,
                        kind,
                        description,
                        owner,
                        freshness,
                        sensitivity,
                    },
                    created_ms,
                    updated_ms,
                },
                versions,
            });
        }
        // Format version 1 ends here; version 2 adds the table's time options.
        let (utc_offset_minutes, event_horizon_days) = if d.remaining() == 0 {
            (0, 0)
        } else {
            (d.i32()?, d.u32()?)
        };
        if d.remaining() != 0 {
            return Err(DecodeError(format!("{} trailing bytes", d.remaining())));
        }
        if utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return Err(DecodeError(format!(
                "UTC offset {utc_offset_minutes} minutes is out of range"
            )));
        }
        let m = Self {
            generation,
            key_kind,
            created_ms,
            keep_versions,
            users,
            next_file_id,
            next_field_id,
            chunks,
            fields,
            utc_offset_minutes,
            event_horizon_days,
        };
        m.validate()?;
        Ok(m)
    }

    /// Cross-field invariants a well-formed manifest satisfies.
    fn validate(&self) -> Result<(), DecodeError> {
        let mut expect = 0u32;
        for c in &self.chunks {
            if c.first != expect || c.file_id >= self.next_file_id {
                return Err(DecodeError(format!(
                    "id chunk {c:?} breaks the id sequence"
                )));
            }
            expect = c
                .first
                .checked_add(c.count)
                .ok_or(DecodeError("id chunk overflows".into()))?;
        }
        if expect != self.users {
            return Err(DecodeError(format!(
                "chunks hold {expect} keys but the table has {} users",
                self.users
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            if f.meta.id >= self.next_field_id || !seen.insert(f.meta.id) {
                return Err(DecodeError(format!("bad field id {}", f.meta.id)));
            }
            for v in &f.versions {
                if v.values.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(DecodeError(format!(
                        "values of `{}` are not sorted and unique",
                        f.meta.spec.path
                    )));
                }
                if v.segments.iter().any(|s| s.1 >= self.next_file_id) {
                    return Err(DecodeError("segment id beyond next file id".into()));
                }
            }
        }
        Ok(())
    }

    /// Every segment file id named by any version.
    pub(crate) fn segment_files(&self) -> std::collections::BTreeSet<(u32, u64)> {
        self.fields
            .iter()
            .flat_map(|f| f.versions.iter())
            .flat_map(|v| v.segments.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let mut m = Manifest::new(KeyKind::Str, 1_700_000_000_000, 7);
        m.users = 3;
        m.next_file_id = 5;
        m.next_field_id = 3;
        m.chunks.push(ChunkRef {
            file_id: 1,
            first: 0,
            count: 3,
        });
        m.fields.push(FieldRecord {
            meta: FieldMeta {
                id: 2,
                spec: FieldSpec::new("demographic/gender", FieldKind::Enum).owner("crm"),
                created_ms: 1,
                updated_ms: 2,
            },
            versions: vec![VersionRecord {
                info: VersionInfo {
                    label: "2026-11-25".into(),
                    created_ms: 2,
                    users: 3,
                    distinct: 2,
                    bytes: 100,
                },
                values: vec!["female".into(), "male".into()],
                segments: vec![(0, 4)],
            }],
        });
        m
    }

    #[test]
    fn manifests_round_trip() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(Path::new("M"), &bytes).unwrap(), m);
    }

    #[test]
    fn damaged_manifests_are_corruption_errors() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x21;
            assert!(
                Manifest::decode(Path::new("M"), &bad).is_err(),
                "flip at {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(Path::new("M"), &bytes[..cut]).is_err());
        }
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = sample();
        m.users = 4;
        assert!(Manifest::decode(Path::new("M"), &m.encode()).is_err());
        let mut m = sample();
        m.fields[0].versions[0].values.reverse();
        assert!(Manifest::decode(Path::new("M"), &m.encode()).is_err());
    }
}
