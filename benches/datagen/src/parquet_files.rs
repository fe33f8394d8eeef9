//! The generated dataset as Parquet files (feature `parquet`), for loaders other than
//! [`load`](crate) — ClickHouse in the side-by-side comparison, and `portrait load`.
//!
//! Three files, holding exactly the data [`load::load`](crate) puts in a Portrait table, and a
//! mapping file ([`MAPPING_FILE`]) with which `portrait load` makes the same table of them:
//!
//! - **`users.parquet`** — one row per user, in id order (so the row number is the dense id):
//!   - `key` (string): [`key`](crate::key)`(id)`;
//!   - `gender`, `city`, `province`, `channel` (strings): the enum values;
//!   - `age`, `vip_level` (int32);
//!   - `registered`, `last_active` (DATE, days since 1970-01-01; Portrait stores midnight UTC of
//!     the day as a timestamp);
//!   - `total_spend` (DECIMAL(18,2) on int64: cents, read exactly by ClickHouse as
//!     `Decimal(18, 2)`);
//!   - one required boolean column per tag of [`tags`](crate::tags), in catalog order, named by
//!     [`tag_column`]: the path with every `/` replaced by `__` (`interest/sports/running` →
//!     `interest__sports__running`; no tag path contains `__`, so the mapping is reversible).
//! - **`tags.parquet`** — one row per (tag, member): `tag` (the path, string), `key` (string);
//!   sorted by tag in catalog order, then by id.
//! - **`events.parquet`** — one row per (event, user, day) with activity: `event` (string,
//!   [`EVENTS`](crate::EVENTS)), `day` (DATE), `key` (string), `count` (int32, ≥ 1); sorted by
//!   day, then event in [`Event::ALL`](crate::Event::ALL) order, then id.
//!
//! - **`mapping.toml`** — [`mapping_toml`](crate::mapping::mapping_toml): load `users.parquet`
//!   (`--format wide`), `tags.parquet` (`--format long`) and `events.parquet`
//!   (`--format events`) with `--mapping mapping.toml`.
//!
//! Row groups hold 2^20 rows (one Portrait shard of users); columns are Snappy-compressed with
//! dictionaries where they pay.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

use crate::{CHANNELS, GENDERS, Generator, PROVINCES, city_names, key, tags};

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

pub use crate::mapping::{MAPPING_FILE, tag_column};

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// Writes `users.parquet`, `tags.parquet` and `events.parquet` of `generator`, and
/// [`MAPPING_FILE`], into `dir` (created if missing), each first to a temporary name and then renamed, so a file that
/// exists is complete.
pub fn write_all(generator: &Generator, dir: &Path) -> Result<Vec<Written>> {
    std::fs::create_dir_all(dir)?;
    let (tags_file, bits) = write_tags(generator, dir)?;
    let users_file = write_users(generator, &bits, dir)?;
    drop(bits);
    let events_file = write_events(generator, dir)?;
    let mapping = dir.join(MAPPING_FILE);
    let tmp = dir.join(format!(".{MAPPING_FILE}.tmp"));
    std::fs::write(&tmp, crate::mapping::mapping_toml())?;
    std::fs::rename(&tmp, &mapping)?;
    Ok(vec![users_file, tags_file, events_file])
}

fn properties() -> Arc<WriterProperties> {
    Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("portrait-datagen {}", env!("CARGO_PKG_VERSION")))
            .build(),
    )
}

/// A Parquet file being written under a temporary name.
struct Out {
    writer: SerializedFileWriter<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
}

impl Out {
    fn create(dir: &Path, name: &str, schema: &str) -> Result<Self> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let schema = Arc::new(parse_message_type(schema)?);
        let file = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        Ok(Self {
            writer: SerializedFileWriter::new(file, schema, properties())?,
            tmp,
            path,
            rows: 0,
        })
    }

    /// Writes one row group; `write_columns` writes every column in schema order.
    fn row_group(
        &mut self,
        rows: usize,
        write_columns: impl FnOnce(&mut Columns<'_, '_>) -> Result<()>,
    ) -> Result<()> {
        let mut group = self.writer.next_row_group()?;
        write_columns(&mut Columns { group: &mut group })?;
        group.close()?;
        self.rows += rows as u64;
        Ok(())
    }

    fn finish(self) -> Result<Written> {
        self.writer.close()?;
        std::fs::rename(&self.tmp, &self.path)?;
        let bytes = std::fs::metadata(&self.path)?.len();
        Ok(Written {
            path: self.path,
            rows: self.rows,
            bytes,
        })
    }
}

/// The columns of one row group, written in schema order.
struct Columns<'g, 'w> {
    group: &'g mut SerializedRowGroupWriter<'w, BufWriter<File>>,
}

macro_rules! column_writer {
    ($name:ident, $ty:ty, $value:ty) => {
        fn $name(&mut self, values: &[$value]) -> Result<()> {
            let mut col = self
                .group
                .next_column()?
                .ok_or_else(|| ParquetError::General("more columns than the schema".into()))?;
            col.typed::<$ty>().write_batch(values, None, None)?;
            col.close()
        }
    };
}

impl Columns<'_, '_> {
    column_writer!(strings, ByteArrayType, ByteArray);
    column_writer!(int32s, Int32Type, i32);
    column_writer!(int64s, Int64Type, i64);
    column_writer!(bools, BoolType, bool);
}

fn bytes(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

fn keys(ids: impl Iterator<Item = u32>) -> Vec<ByteArray> {
    ids.map(|id| ByteArray::from(key(id).into_bytes()))
        .collect()
}

/// Members of every tag as bitsets (one bit per user), for the wide file.
type TagBits = Vec<Vec<u64>>;

fn write_tags(generator: &Generator, dir: &Path) -> Result<(Written, TagBits)> {
    let words = (generator.users() as usize).div_ceil(64);
    let mut out = Out::create(
        dir,
        "tags.parquet",
        "message tags { required binary tag (STRING); required binary key (STRING); }",
    )?;
    let mut bits: TagBits = Vec::with_capacity(tags().len());
    let mut pending: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut pending_rows = 0;
    let mut failure = None;
    let flush = |pending: &mut Vec<(usize, Vec<u32>)>, out: &mut Out| -> Result<()> {
        let rows: usize = pending.iter().map(|(_, m)| m.len()).sum();
        if rows == 0 {
            return Ok(());
        }
        let names: Vec<ByteArray> = pending
            .iter()
            .flat_map(|(t, m)| std::iter::repeat_n(bytes(&tags()[*t].path), m.len()))
            .collect();
        let ks = keys(pending.iter().flat_map(|(_, m)| m.iter().copied()));
        pending.clear();
        out.row_group(rows, |c| {
            c.strings(&names)?;
            c.strings(&ks)
        })
    };
    generator.for_each_tag(|tag, members| {
        let mut b = vec![0u64; words];
        for &m in members {
            b[m as usize >> 6] |= 1 << (m & 63);
        }
        bits.push(b);
        if failure.is_some() {
            return;
        }
        pending.push((tag, members.to_vec()));
        pending_rows += members.len();
        if pending_rows >= ROW_GROUP_ROWS {
            pending_rows = 0;
            if let Err(e) = flush(&mut pending, &mut out) {
                failure = Some(e);
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, &mut out)?;
    Ok((out.finish()?, bits))
}

fn write_users(generator: &Generator, bits: &TagBits, dir: &Path) -> Result<Written> {
    let mut schema = String::from(
        "message users {
          required binary key (STRING);
          required binary gender (STRING);
          required int32 age;
          required binary city (STRING);
          required binary province (STRING);
          required binary channel (STRING);
          required int32 registered (DATE);
          required int32 vip_level;
          required int64 total_spend (DECIMAL(18, 2));
          required int32 last_active (DATE);
        ",
    );
    for t in tags() {
        schema.push_str(&format!("required boolean {};\n", tag_column(&t.path)));
    }
    schema.push('}');
    let mut out = Out::create(dir, "users.parquet", &schema)?;
    let a = generator.attributes();
    let cities = city_names();
    let n = generator.users() as usize;
    let mut flags = Vec::with_capacity(ROW_GROUP_ROWS.min(n));
    for lo in (0..n).step_by(ROW_GROUP_ROWS) {
        let hi = (lo + ROW_GROUP_ROWS).min(n);
        let strings = |f: &dyn Fn(usize) -> &'static str| -> Vec<ByteArray> {
            (lo..hi).map(|u| bytes(f(u))).collect()
        };
        out.row_group(hi - lo, |c| {
            c.strings(&keys(lo as u32..hi as u32))?;
            c.strings(&strings(&|u| GENDERS[a.gender[u] as usize]))?;
            c.int32s(
                &a.age[lo..hi]
                    .iter()
                    .map(|&x| i32::from(x))
                    .collect::<Vec<_>>(),
            )?;
            c.strings(&strings(&|u| cities[a.city[u] as usize].as_str()))?;
            c.strings(&strings(&|u| PROVINCES[a.province[u] as usize]))?;
            c.strings(&strings(&|u| CHANNELS[a.channel[u] as usize]))?;
            c.int32s(&a.registered_day[lo..hi])?;
            c.int32s(
                &a.vip[lo..hi]
                    .iter()
                    .map(|&x| i32::from(x))
                    .collect::<Vec<_>>(),
            )?;
            c.int64s(&a.spend_cents[lo..hi])?;
            c.int32s(&a.last_active_day[lo..hi])?;
            for b in bits {
                flags.clear();
                flags.extend((lo..hi).map(|u| (b[u >> 6] >> (u & 63)) & 1 == 1));
                c.bools(&flags)?;
            }
            Ok(())
        })?;
    }
    out.finish()
}

fn write_events(generator: &Generator, dir: &Path) -> Result<Written> {
    let mut out = Out::create(
        dir,
        "events.parquet",
        "message events {
          required binary event (STRING);
          required int32 day (DATE);
          required binary key (STRING);
          required int32 count;
        }",
    )?;
    let mut event = Vec::new();
    let mut day = Vec::new();
    let mut ks = Vec::new();
    let mut count = Vec::new();
    let mut failure = None;
    let flush = |event: &mut Vec<ByteArray>,
                 day: &mut Vec<i32>,
                 ks: &mut Vec<ByteArray>,
                 count: &mut Vec<i32>,
                 out: &mut Out|
     -> Result<()> {
        if event.is_empty() {
            return Ok(());
        }
        out.row_group(event.len(), |c| {
            c.strings(event)?;
            c.int32s(day)?;
            c.strings(ks)?;
            c.int32s(count)
        })?;
        event.clear();
        day.clear();
        ks.clear();
        count.clear();
        Ok(())
    };
    generator.for_each_event_day(|e, d, rows| {
        if failure.is_some() {
            return;
        }
        for (u, c) in rows {
            event.push(bytes(e.name()));
            day.push(d);
            ks.push(ByteArray::from(key(u).into_bytes()));
            count.push(i32::from(c));
        }
        if event.len() >= ROW_GROUP_ROWS
            && let Err(e) = flush(&mut event, &mut day, &mut ks, &mut count, &mut out)
        {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut event, &mut day, &mut ks, &mut count, &mut out)?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, RowAccessor};

    use super::*;
    use crate::{Event, REFERENCE_DAY, tag_index};

    #[test]
    fn tag_columns_are_distinct_and_reversible() {
        let mut seen = std::collections::HashSet::new();
        for t in tags() {
            assert!(!t.path.contains("__"), "{} contains __", t.path);
            let c = tag_column(&t.path);
            assert_eq!(c.replace("__", "/"), t.path);
            assert!(seen.insert(c));
        }
    }

    fn rows(path: &Path) -> Vec<parquet::record::Row> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn files_hold_the_generated_data() {
        let g = Generator::new(5, 3_000);
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&g, dir.path()).unwrap();
        assert_eq!(written.len(), 3);

        let a = g.attributes();
        let users = rows(&dir.path().join("users.parquet"));
        assert_eq!(users.len(), 3_000);
        let sports = tag_index("interest/sports").unwrap();
        let sports_members = g.tag_members(sports);
        let col = 10 + sports;
        for (u, row) in users.iter().enumerate() {
            let cols: Vec<(&String, &Field)> = row.get_column_iter().collect();
            assert_eq!(cols[0].1, &Field::Str(key(u as u32)));
            assert_eq!(cols[1].1, &Field::Str(GENDERS[a.gender[u] as usize].into()));
            assert_eq!(cols[2].1, &Field::Int(i32::from(a.age[u])));
            assert_eq!(cols[6].1, &Field::Date(a.registered_day[u]));
            match cols[8].1 {
                Field::Decimal(d) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(d.data());
                    assert_eq!(i64::from_be_bytes(b), a.spend_cents[u]);
                }
                other => panic!("total_spend is {other:?}"),
            }
            assert_eq!(cols[col].0, "interest__sports");
            assert_eq!(
                cols[col].1,
                &Field::Bool(sports_members.binary_search(&(u as u32)).is_ok())
            );
        }

        let tag_rows = rows(&dir.path().join("tags.parquet"));
        let total: usize = (0..tags().len()).map(|t| g.tag_members(t).len()).sum();
        assert_eq!(tag_rows.len(), total);
        let in_file: Vec<String> = tag_rows
            .iter()
            .filter(|r| r.get_string(0).unwrap() == "interest/sports")
            .map(|r| r.get_string(1).unwrap().clone())
            .collect();
        let expected: Vec<String> = sports_members.iter().map(|&u| key(u)).collect();
        assert_eq!(in_file, expected);

        let events = rows(&dir.path().join("events.parquet"));
        let pays: Vec<(String, i32)> = events
            .iter()
            .filter(|r| {
                r.get_string(0).unwrap() == "pay"
                    && *r.get_column_iter().nth(1).unwrap().1 == Field::Date(REFERENCE_DAY)
            })
            .map(|r| (r.get_string(2).unwrap().clone(), r.get_int(3).unwrap()))
            .collect();
        let expected: Vec<(String, i32)> = g
            .event_day(Event::Pay, REFERENCE_DAY)
            .into_iter()
            .map(|(u, c)| (key(u), i32::from(c)))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(pays, expected);
        assert_eq!(written[2].rows, events.len() as u64);
    }
}
