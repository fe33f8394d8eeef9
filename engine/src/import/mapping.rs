//! The mapping file: how the columns (wide) or the names (long, events) of a file become fields.
//!
//! ```toml
//! key = "user_id"            # the key column (default: key, user, user_id or id)
//! prefix = "crm"             # every field goes under crm/
//! float_scale = 4            # scale of decimals loaded from floats (default 2)
//! enum_max_distinct = 5000   # most distinct values a string column may have to be inferred an enum
//!
//! [fields.gender]            # a column of a wide file, or a name in the field/tag/event column
//! path = "demographic/gender"    # rename (under the prefix)
//! kind = "enum"                  # flag | enum | set | int | decimal | timestamp | event
//! description = "Self-declared gender"
//! owner = "crm-team"
//! sensitivity = "pii"
//!
//! [fields.interests]
//! kind = "set"
//! separator = "|"            # a set column's values are split on it (default ",")
//!
//! [fields.spend]
//! kind = "decimal"
//! scale = 2
//!
//! [fields.internal_note]
//! skip = true
//! ```
//!
//! Unknown keys are errors, so a typo does not silently change a load.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::{FieldKind, FieldSpec, validate_path};
use crate::error::{Error, Result};

/// The parsed mapping file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The key column.
    pub key: Option<String>,
    /// A path every field is nested under.
    #[serde(default)]
    pub prefix: String,
    /// Scale of decimals loaded from floating point values.
    pub float_scale: Option<u8>,
    /// Most distinct values a string column may have in its sample to be inferred an enum.
    pub enum_max_distinct: Option<usize>,
    /// Per source name: a column (wide) or a value of the field, tag or event column.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldMapping>,
}

/// How one source name becomes a field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The field's path under the prefix (default: the source name).
    pub path: Option<String>,
    /// The kind (default: inferred).
    pub kind: Option<String>,
    /// A decimal's scale (with `kind = "decimal"`; default: inferred, or the float scale).
    pub scale: Option<u8>,
    /// A set's separator within one cell (default `,`).
    pub separator: Option<String>,
    /// Catalog description.
    #[serde(default)]
    pub description: String,
    /// Catalog owner.
    #[serde(default)]
    pub owner: String,
    /// Sensitivity label.
    #[serde(default)]
    pub sensitivity: String,
    /// Leave this column or name out of the load.
    #[serde(default)]
    pub skip: bool,
}

/// A kind named in a mapping (`event` included, which has no [`FieldKind`] here yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MappedKind {
    Field(FieldKind),
    Event,
}

impl Mapping {
    /// Parses a mapping from TOML text and checks it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let m: Mapping = toml::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("mapping: {}", e.message().trim())))?;
        if !m.prefix.is_empty() {
            validate_path(&m.prefix)?;
        }
        if let Some(s) = m.float_scale
            && s > 18
        {
            return Err(Error::InvalidArgument(format!(
                "mapping: float_scale {s} is over 18"
            )));
        }
        for (name, f) in &m.fields {
            if let Some(p) = &f.path {
                validate_path(p)?;
            }
            f.kind(name)?;
            if f.separator.as_ref().is_some_and(String::is_empty) {
                return Err(Error::InvalidArgument(format!(
                    "mapping: field `{name}` has an empty separator"
                )));
            }
        }
        Ok(m)
    }

    /// The mapping of source name `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<&FieldMapping> {
        self.fields.get(name)
    }

    /// Whether `name` is skipped.
    pub(crate) fn skips(&self, name: &str) -> bool {
        self.get(name).is_some_and(|f| f.skip)
    }

    /// The field path of source name `name`: renamed, under the prefix.
    pub(crate) fn path_of(&self, name: &str) -> String {
        let base = self
            .get(name)
            .and_then(|f| f.path.as_deref())
            .unwrap_or(name);
        if self.prefix.is_empty() {
            base.to_owned()
        } else {
            format!("{}/{base}", self.prefix)
        }
    }

    /// A spec for source name `name` with kind `kind` and the mapping's descriptive fields.
    pub(crate) fn spec(&self, name: &str, kind: FieldKind) -> FieldSpec {
        let mut spec = FieldSpec::new(self.path_of(name), kind);
        if let Some(f) = self.get(name) {
            spec = spec
                .description(f.description.clone())
                .owner(f.owner.clone())
                .sensitivity(f.sensitivity.clone());
        }
        spec
    }

    /// The set separator of `name`.
    pub(crate) fn separator(&self, name: &str) -> String {
        self.get(name)
            .and_then(|f| f.separator.clone())
            .unwrap_or_else(|| ",".to_owned())
    }
}

impl FieldMapping {
    /// The kind this mapping sets, if any.
    pub(crate) fn kind(&self, name: &str) -> Result<Option<MappedKind>> {
        let Some(k) = self.kind.as_deref() else {
            if self.scale.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "mapping: field `{name}` sets a scale without kind = \"decimal\""
                )));
            }
            return Ok(None);
        };
        let kind = match k {
            "flag" => FieldKind::Flag,
            "enum" => FieldKind::Enum,
            "set" => FieldKind::Set,
            "int" => FieldKind::Int,
            "timestamp" => FieldKind::Timestamp,
            "decimal" => {
                let scale = self.scale.unwrap_or(super::DEFAULT_FLOAT_SCALE);
                if scale > 18 {
                    return Err(Error::InvalidArgument(format!(
                        "mapping: field `{name}` has scale {scale}, over 18"
                    )));
                }
                FieldKind::Decimal { scale }
            }
            "event" => return Ok(Some(MappedKind::Event)),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "mapping: field `{name}` has unknown kind `{other}` (flag, enum, set, int, \
                     decimal, timestamp or event)"
                )));
            }
        };
        if self.scale.is_some() && !matches!(kind, FieldKind::Decimal { .. }) {
            return Err(Error::InvalidArgument(format!(
                "mapping: field `{name}` sets a scale but is {}",
                kind.name()
            )));
        }
        Ok(Some(MappedKind::Field(kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies_a_mapping() {
        let m = Mapping::from_toml(
            r#"
            prefix = "crm"
            key = "uid"
            [fields.g]
            path = "demographic/gender"
            kind = "enum"
            owner = "crm-team"
            [fields.spend]
            kind = "decimal"
            scale = 3
            [fields.tags]
            kind = "set"
            separator = "|"
            [fields.note]
            skip = true
            "#,
        )
        .unwrap();
        assert_eq!(m.key.as_deref(), Some("uid"));
        assert_eq!(m.path_of("g"), "crm/demographic/gender");
        assert_eq!(m.path_of("age"), "crm/age");
        assert_eq!(m.spec("g", FieldKind::Enum).owner, "crm-team");
        assert!(m.skips("note"));
        assert_eq!(m.separator("tags"), "|");
        assert_eq!(m.separator("other"), ",");
        assert_eq!(
            m.get("spend").unwrap().kind("spend").unwrap(),
            Some(MappedKind::Field(FieldKind::Decimal { scale: 3 }))
        );
    }

    #[test]
    fn refuses_mistakes() {
        for bad in [
            "kye = \"x\"",
            "[fields.a]\nkind = \"float\"",
            "[fields.a]\nkind = \"int\"\nscale = 2",
            "[fields.a]\npath = \"a b\"",
            "prefix = \"/x\"",
            "[fields.a]\nkind = \"set\"\nseparator = \"\"",
            "float_scale = 30",
            "not toml at all [",
        ] {
            let e = Mapping::from_toml(bad).unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::BadInput, "{bad}: {e}");
        }
    }
}
