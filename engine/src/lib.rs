//! # portrait-engine
//!
//! The embeddable core of Portrait, a bitmap-index database for user profiling. It has no network
//! or protobuf types: a service can embed it directly, and `portraitd` is a thin layer over it.
//!
//! Data flows through the modules in this order (see `ARCHITECTURE.md`):
//! [`ids`] (external keys to dense ids) → [`table`] (loads, snapshots) → [`storage`] (segments,
//! manifests) → [`bitmap`] (BSI and bitmap algorithms) → query primitives on [`TableSnapshot`].
//!
//! ```
//! use portrait_engine::{Database, FieldKind, FieldSpec, KeyKind, Value};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path())?;
//! let users = db.create_table("users", KeyKind::Str)?;
//!
//! let mut load = users.load("2026-11-25")?;
//! let vip = load.field(FieldSpec::new("vip", FieldKind::Flag))?;
//! let age = load.field(FieldSpec::new("age", FieldKind::Int))?;
//! load.flag(vip, "alice")?;
//! load.value(age, "alice", Value::Int(31))?;
//! load.value(age, "bob", Value::Int(17))?;
//! load.commit()?;
//!
//! let snap = users.snapshot();
//! assert_eq!(snap.field("vip")?.flag_bitmap()?.cardinality(), 1);
//! let adults = snap.field("age")?.compare(portrait_engine::CmpOp::Ge, 18)?;
//! assert_eq!(adults.cardinality(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analysis;
pub mod behaviour;
pub mod bitmap;
pub mod calendar;
pub mod catalog;
mod codec;
mod db;
mod error;
pub mod expr;
pub mod ids;
#[cfg(feature = "import")]
pub mod import;
mod prefault;
pub mod query;
pub mod realtime;
pub mod storage;

pub mod table;
#[cfg(test)]
mod testutil;

pub use analysis::{Aggregate, BucketRow, Buckets, GroupRow, TopOrder, TopRow, overlap};
pub use catalog::{FieldKind, FieldMeta, FieldSpec, Freshness, VersionInfo};
pub use croaring::Bitmap;
pub use db::{Database, Options};
pub use error::{Error, ErrorClass, Result};
pub use expr::{CmpOp, Expr, ParseError, parse};
pub use ids::{Key, KeyKind, KeyRef};
pub use query::{Crowd, ExplainNode, MembersPage};
pub use realtime::CompactSummary;
pub use realtime::{Change, DeltaStats, WalSync, Write, WriteSummary};
pub use table::{
    BackupStats, FieldRef, KeyFinder, Load, LoadField, LoadSummary, Table, TableSnapshot, Value,
};

/// Ids per shard, as a power of two: shard `s` holds ids `s << SHARD_BITS ..`.
pub const SHARD_BITS: u32 = 20;

/// Number of shards needed for `users` ids.
pub fn shard_count(users: u32) -> u32 {
    ((users as u64).div_ceil(1u64 << SHARD_BITS)) as u32
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Installs Rust's global allocator as CRoaring's allocator (it makes bitmap operations several
/// times faster than the C allocator's page-faulting pattern).
///
/// # Safety
/// Call it once, at the start of `main`, before any bitmap exists: a bitmap allocated by one
/// allocator and freed by the other is undefined behaviour.
pub unsafe fn use_rust_allocator_for_bitmaps() {
    // SAFETY: forwarded to the caller (no CRoaring object exists yet).
    unsafe { croaring::configure_rust_alloc() }
}
