//! Per-request limits: what one call may ask of the server.
//!
//! Every limit is checked before the engine does any work, and a refusal says which limit was hit
//! and what its value is. Requests that are too large fail with `RESOURCE_EXHAUSTED`; malformed
//! ones (an expression tree nested too deeply) with `INVALID_ARGUMENT`. The limits are set in the
//! `[limits]` table of the configuration file.

use portrait_engine::realtime::MAX_BATCH;
use serde::Deserialize;
use tonic::Status;

/// The limits of one server. `Default` gives the values documented on each field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Keys per `MembersBatch` of a `Members` stream (default 4,096). A batch also ends once its
    /// keys reach 1 MiB.
    pub members_batch_keys: usize,
    /// Keys one `Members` call may export (default 100,000,000); `limit` above it is refused,
    /// and an unlimited export stops there with `RESOURCE_EXHAUSTED` after a resumable batch.
    pub max_export_keys: u64,
    /// Keys of one `BatchPortrait` (default 10,000).
    pub max_batch_portrait_keys: usize,
    /// Crowds of one `Overlap` (default 64).
    pub max_overlap_crowds: usize,
    /// `n` of one `Sample` (default 1,000,000).
    pub max_sample: u32,
    /// Bytes of an expression's text form (default 65,536).
    pub max_expr_bytes: usize,
    /// Nesting depth of a structured expression: the most `And`, `Or`, `Xor` and `Not` nodes on
    /// one path from the root (default 40).
    pub max_expr_depth: usize,
    /// Rows of one `Group` (default 100,000; 1,000 when the request asks for 0).
    pub max_group_rows: u32,
    /// `k` of one `Top` (default 10,000; 10 when the request asks for 0).
    pub max_top_k: u32,
    /// Explicit bounds of one `Distribution` (default 10,000).
    pub max_buckets: usize,
    /// Writes of one real-time `Write` batch (default and most: the engine's
    /// [`MAX_BATCH`], 100,000).
    pub max_write_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            members_batch_keys: 4_096,
            max_export_keys: 100_000_000,
            max_batch_portrait_keys: 10_000,
            max_overlap_crowds: 64,
            max_sample: 1_000_000,
            max_expr_bytes: 64 * 1024,
            // Protobuf decoding allows 100 nested messages (two per level): stay well below.
            max_expr_depth: 40,
            max_group_rows: 100_000,
            max_top_k: 10_000,
            max_buckets: 10_000,
            max_write_batch: MAX_BATCH,
        }
    }
}

/// Rows of a `Group` when the request leaves `limit` at 0.
pub const DEFAULT_GROUP_ROWS: u32 = 1_000;
/// Rows of a `Top` when the request leaves `k` at 0.
pub const DEFAULT_TOP_K: u32 = 10;
/// Bytes of keys after which a `MembersBatch` ends, whatever its key count.
pub const MEMBERS_BATCH_BYTES: usize = 1 << 20;

impl Limits {
    /// Checks that the limits can work together.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("members_batch_keys", self.members_batch_keys as u64),
            ("max_export_keys", self.max_export_keys),
            (
                "max_batch_portrait_keys",
                self.max_batch_portrait_keys as u64,
            ),
            ("max_overlap_crowds", self.max_overlap_crowds as u64),
            ("max_expr_bytes", self.max_expr_bytes as u64),
            ("max_expr_depth", self.max_expr_depth as u64),
            ("max_group_rows", self.max_group_rows as u64),
            ("max_top_k", self.max_top_k as u64),
            ("max_buckets", self.max_buckets as u64),
            ("max_write_batch", self.max_write_batch as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.max_write_batch > MAX_BATCH {
            return Err(format!(
                "limits.max_write_batch must be at most {MAX_BATCH} (the engine's batch limit), \
                 got {}",
                self.max_write_batch
            ));
        }
        Ok(())
    }
}

/// Refuses `asked` items of `what` when they exceed `limit` (`RESOURCE_EXHAUSTED`).
pub fn check(what: &str, asked: u64, limit: u64) -> Result<(), Status> {
    if asked > limit {
        return Err(Status::resource_exhausted(format!(
            "{what}: {asked} exceeds this server's limit of {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_is_refused() {
        Limits::default().validate().unwrap();
        let zero = Limits {
            max_top_k: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.validate().unwrap_err(),
            "limits.max_top_k must be at least 1"
        );
        let over = Limits {
            max_write_batch: MAX_BATCH + 1,
            ..Limits::default()
        };
        assert!(
            over.validate().unwrap_err().contains("at most 100000"),
            "{:?}",
            over.validate()
        );
    }

    #[test]
    fn check_names_the_limit() {
        check("keys", 10, 10).unwrap();
        let status = check("keys of BatchPortrait", 11, 10).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "keys of BatchPortrait: 11 exceeds this server's limit of 10"
        );
    }
}
