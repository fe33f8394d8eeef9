//! The catalog: field kinds, names and metadata.
//!
//! A *field* is named by a hierarchical path (`interest/sports`): segments of ASCII letters,
//! digits and `_` (not starting with a digit) joined by `/`. Its metadata ([`FieldMeta`]) says
//! what it is for people; its versions ([`VersionInfo`]) say what data it holds.

use crate::error::{Error, Result};

/// Maximum length of a field path in bytes.
pub const MAX_PATH_LEN: usize = 256;
/// Maximum length of a table name in bytes.
pub const MAX_TABLE_NAME_LEN: usize = 64;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A boolean tag: one bitmap of the users who have it.
    Flag,
    /// One value per user from a dictionary (gender, city): a bitmap per value plus a code column.
    Enum,
    /// Any number of values per user (interests): a bitmap per value plus a per-user list.
    Set,
    /// A signed 64-bit integer: a bit-sliced index plus a column.
    Int,
    /// A decimal stored as an integer count of `10^-scale` units.
    Decimal {
        /// Digits after the decimal point (0..=18).
        scale: u8,
    },
    /// A point in time, as milliseconds since the Unix epoch (UTC).
    Timestamp,
    /// A behaviour: per day (in the table's time zone), the users who did it, and how many
    /// times each did it that day. A version's value dictionary lists its days as `YYYY-MM-DD`.
    Event,
}

impl FieldKind {
    /// The kind's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Flag => "flag",
            FieldKind::Enum => "enum",
            FieldKind::Set => "set",
            FieldKind::Int => "int",
            FieldKind::Decimal { .. } => "decimal",
            FieldKind::Timestamp => "timestamp",
            FieldKind::Event => "event",
        }
    }

    /// Whether the field is stored as a bit-sliced index.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldKind::Int | FieldKind::Decimal { .. } | FieldKind::Timestamp
        )
    }

    /// Whether the field has a dictionary of string values.
    pub fn has_values(self) -> bool {
        matches!(self, FieldKind::Enum | FieldKind::Set)
    }

    pub(crate) fn code(self) -> (u8, u8) {
        match self {
            FieldKind::Flag => (1, 0),
            FieldKind::Enum => (2, 0),
            FieldKind::Set => (3, 0),
            FieldKind::Int => (4, 0),
            FieldKind::Decimal { scale } => (5, scale),
            FieldKind::Timestamp => (6, 0),
            FieldKind::Event => (7, 0),
        }
    }

    pub(crate) fn from_code(kind: u8, scale: u8) -> Option<Self> {
        Some(match (kind, scale) {
            (1, _) => FieldKind::Flag,
            (2, _) => FieldKind::Enum,
            (3, _) => FieldKind::Set,
            (4, _) => FieldKind::Int,
            (5, s) if s <= 18 => FieldKind::Decimal { scale: s },
            (6, _) => FieldKind::Timestamp,
            (7, _) => FieldKind::Event,
            _ => return None,
        })
    }
}

/// How a field is kept up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Recomputed in a batch and bulk-loaded (T+1).
    #[default]
    Offline,
    /// Updated as events happen.
    Realtime,
}

impl Freshness {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Freshness::Offline => "offline",
            Freshness::Realtime => "realtime",
        }
    }
}

/// Descriptive metadata of a field, as given when it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Hierarchical path, e.g. `interest/sports`.
    pub path: String,
    /// What the field holds.
    pub kind: FieldKind,
    /// Free text for people browsing the catalog.
    pub description: String,
    /// Who is responsible for the field.
    pub owner: String,
    /// Batch or real-time.
    pub freshness: Freshness,
    /// Sensitivity label (empty = not sensitive); the security layer restricts labelled fields.
    pub sensitivity: String,
}

impl FieldSpec {
    /// A spec with empty description, owner and sensitivity, offline freshness.
    pub fn new(path: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            path: path.into(),
            kind,
            description: String::new(),
            owner: String::new(),
            freshness: Freshness::Offline,
            sensitivity: String::new(),
        }
    }
    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Sets the owner.
    pub fn owner(mut self, o: impl Into<String>) -> Self {
        self.owner = o.into();
        self
    }
    /// Sets the freshness.
    pub fn freshness(mut self, f: Freshness) -> Self {
        self.freshness = f;
        self
    }
    /// Sets the sensitivity label.
    pub fn sensitivity(mut self, s: impl Into<String>) -> Self {
        self.sensitivity = s.into();
        self
    }
}

/// A field as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMeta {
    /// Stable numeric id within the table (used in segment files).
    pub id: u32,
    /// Descriptive metadata.
    pub spec: FieldSpec,
    /// When the field was first loaded (ms since epoch).
    pub created_ms: i64,
    /// When the field last received a version (ms since epoch).
    pub updated_ms: i64,
}

/// One loaded version of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The label given at load time (e.g. `2026-11-25`).
    pub label: String,
    /// When it was published (ms since epoch).
    pub created_ms: i64,
    /// Users with a value (flag: members) in this version.
    pub users: u64,
    /// Distinct values (enum/set: dictionary size; numeric: distinct values; flag: 1 or 0).
    pub distinct: u64,
    /// Bytes of bitmaps and columns this version occupies in its segments.
    pub bytes: u64,
}

/// Checks a field path: non-empty segments of `[A-Za-z0-9_]+` joined by `/`.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("a field path cannot be empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("a field path is at most 256 bytes");
    }
    for seg in path.split('/') {
        if seg.is_empty() || !seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("each `/`-separated segment must be one or more letters, digits or `_`");
        }
    }
    Ok(())
}

/// Checks a table name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes.
pub fn validate_table_name(name: &str) -> Result<()> {
    if name.len() > MAX_TABLE_NAME_LEN || !is_identifier(name) {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "a table name is 1 to 64 letters, digits or `_`, not starting with a digit",
        });
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_naming_rules() {
        for ok in ["vip", "interest/sports", "a_b/c1/_d", "device/5g"] {
            validate_path(ok).unwrap();
        }
        for bad in ["", "/x", "x/", "a//b", "a-b", "a b", "ä"] {
            assert!(validate_path(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(validate_path(&"a".repeat(257)).is_err());
        validate_table_name("users").unwrap();
        assert!(validate_table_name("a/b").is_err());
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [
            FieldKind::Flag,
            FieldKind::Enum,
            FieldKind::Set,
            FieldKind::Int,
            FieldKind::Decimal { scale: 2 },
            FieldKind::Timestamp,
            FieldKind::Event,
        ] {
            let (a, b) = k.code();
            assert_eq!(FieldKind::from_code(a, b), Some(k));
        }
        assert_eq!(FieldKind::from_code(5, 19), None);
        assert_eq!(FieldKind::from_code(9, 0), None);
    }
}
