//! The engine's one error type.
//!
//! Every variant belongs to exactly one [`ErrorClass`], which is what callers (the server's
//! status mapping, the CLI's exit codes) dispatch on. The message of each variant is written for
//! the person who made the request: it names the table, field, file or key involved.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, independent of its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was malformed or impossible; retrying it unchanged fails again.
    BadInput,
    /// A named table, field, version or user does not exist.
    NotFound,
    /// The request conflicts with existing state (e.g. the table already exists).
    Conflict,
    /// A request or result exceeded a configured limit.
    LimitExceeded,
    /// Bytes on disk are not what was written: checksum, magic, length or version mismatch.
    Corruption,
    /// The storage is temporarily unusable (I/O failure, lock held by another process).
    Unavailable,
    /// A bug: an invariant of the engine does not hold.
    Internal,
}

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Class [`ErrorClass::BadInput`]: an argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Class [`ErrorClass::BadInput`]: a table or field name breaks the naming rules.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// Class [`ErrorClass::BadInput`]: the operation needs a field of another kind.
    #[error("field `{path}` is {actual}, but this needs {expected}")]
    KindMismatch {
        /// The field's path.
        path: String,
        /// The field's kind.
        actual: &'static str,
        /// What the operation accepts.
        expected: &'static str,
    },

    /// Class [`ErrorClass::BadInput`]: a crowd expression does not parse.
    #[error("{0}")]
    Parse(#[from] crate::expr::ParseError),

    /// Class [`ErrorClass::BadInput`]: a file being imported cannot be loaded: malformed, of
    /// the wrong shape, or (unless bad rows are skipped) holding a row that does not fit.
    #[error("{}{}: {reason}", path.display(), row.map(|r| format!(", row {r}")).unwrap_or_default())]
    Import {
        /// The file.
        path: PathBuf,
        /// The 1-based data row (a CSV header is not a row), when one row is at fault.
        row: Option<u64>,
        /// What is wrong, naming the column or field involved.
        reason: String,
    },

    /// Class [`ErrorClass::BadInput`]: the request needs something this build does not offer.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Class [`ErrorClass::NotFound`]: no such table.
    #[error("table `{0}` not found")]
    TableNotFound(String),

    /// Class [`ErrorClass::NotFound`]: no such field, with the closest known path if any.
    #[error("field `{path}` not found{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    FieldNotFound {
        /// The requested path.
        path: String,
        /// The closest existing path, if one is close enough.
        suggestion: Option<String>,
    },

    /// Class [`ErrorClass::NotFound`]: the field has no version with this label.
    #[error("field `{path}` has no version `{label}`")]
    VersionNotFound {
        /// The field's path.
        path: String,
        /// The requested label.
        label: String,
    },

    /// Class [`ErrorClass::NotFound`]: the external user key is unknown to the table.
    #[error("user `{0}` not found")]
    KeyNotFound(String),

    /// Class [`ErrorClass::Conflict`]: a table with this name exists already.
    #[error("table `{0}` already exists")]
    TableExists(String),

    /// Class [`ErrorClass::Conflict`]: a field exists with another kind.
    #[error("field `{path}` already exists as {existing}, cannot load it as {requested}")]
    FieldKindConflict {
        /// The field's path.
        path: String,
        /// Its kind in the catalog.
        existing: &'static str,
        /// The kind the load asked for.
        requested: &'static str,
    },

    /// Class [`ErrorClass::LimitExceeded`]: a configured limit was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    /// Class [`ErrorClass::Corruption`]: a file's bytes fail validation.
    #[error("corrupt file {}: {reason}", path.display())]
    Corruption {
        /// The file.
        path: PathBuf,
        /// What failed (checksum, magic, bounds, ...).
        reason: String,
    },

    /// Class [`ErrorClass::Corruption`]: a file was written by a format version this build cannot read.
    #[error("file {} has format version {found}; this build reads versions {oldest} to {current}", path.display())]
    UnsupportedFormatVersion {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
        /// Version this build writes.
        current: u32,
    },

    /// Class [`ErrorClass::Unavailable`]: an I/O operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Class [`ErrorClass::Unavailable`]: another process holds the database lock.
    #[error("database {} is in use by another process", .0.display())]
    Locked(PathBuf),

    /// Class [`ErrorClass::Internal`]: an engine invariant does not hold (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidArgument(_)
            | Error::InvalidName { .. }
            | Error::KindMismatch { .. }
            | Error::Parse(_)
            | Error::Import { .. }
            | Error::Unsupported(_) => ErrorClass::BadInput,
            Error::TableNotFound(_)
            | Error::FieldNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::KeyNotFound(_) => ErrorClass::NotFound,
            Error::TableExists(_) | Error::FieldKindConflict { .. } => ErrorClass::Conflict,
            Error::LimitExceeded(_) => ErrorClass::LimitExceeded,
            Error::Corruption { .. } | Error::UnsupportedFormatVersion { .. } => {
                ErrorClass::Corruption
            }
            Error::Io { .. } | Error::Locked(_) => ErrorClass::Unavailable,
            Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// A copy of this error for each of several callers that share one failure (an I/O
    /// error's source is reduced to its kind and message).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption { path, reason } => Error::Corruption {
                path: path.clone(),
                reason: reason.clone(),
            },
            other => Error::Internal(other.to_string()),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
