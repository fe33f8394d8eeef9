//! Engine errors to gRPC statuses: the one place where an [`Error`] becomes a [`Status`].
//!
//! The mapping dispatches on the error's [`ErrorClass`] with no catch-all arm, so a new class in
//! the engine is a compile error here rather than a silent `INTERNAL`:
//!
//! | class | code |
//! |---|---|
//! | `BadInput` | `INVALID_ARGUMENT` (parse errors also carry `x-portrait-line` / `x-portrait-column`) |
//! | `NotFound` | `NOT_FOUND`, naming the missing table, field, version or user |
//! | `Conflict` | `ALREADY_EXISTS` |
//! | `LimitExceeded` | `RESOURCE_EXHAUSTED` |
//! | `Corruption` | `DATA_LOSS` |
//! | `Unavailable` | `UNAVAILABLE` |
//! | `Internal` | `INTERNAL` |
//!
//! A parse error's message ends with `at line L, column C` (1-based, columns in characters), as
//! `proto/README.md` promises, for tools that show only the message.

use portrait_engine::{Error, ErrorClass};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// Response metadata key carrying the 1-based line of an expression error.
pub const LINE_METADATA: &str = "x-portrait-line";
/// Response metadata key carrying the 1-based column (in characters) of an expression error.
pub const COLUMN_METADATA: &str = "x-portrait-column";

/// The gRPC code of an engine error class.
pub fn code_of(class: ErrorClass) -> Code {
    match class {
        ErrorClass::BadInput => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::Conflict => Code::AlreadyExists,
        ErrorClass::LimitExceeded => Code::ResourceExhausted,
        ErrorClass::Corruption => Code::DataLoss,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Internal => Code::Internal,
    }
}

/// Converts an engine error into the status sent to the client.
pub fn to_status(err: Error) -> Status {
    let code = code_of(err.class());
    match code {
        Code::DataLoss | Code::Internal => tracing::error!(error = %err, "engine failure"),
        Code::Unavailable => tracing::warn!(error = %err, "storage unavailable"),
        _ => {}
    }
    if let Error::Parse(parse) = &err {
        let mut metadata = MetadataMap::new();
        metadata.insert(LINE_METADATA, parse.line.into());
        metadata.insert(COLUMN_METADATA, parse.column.into());
        let message = format!(
            "{} at line {}, column {}",
            parse.message, parse.line, parse.column
        );
        return Status::with_metadata(code, message, metadata);
    }
    match err {
        // The code already says so: without the engine's "invalid argument: " prefix, a
        // client that names the code does not print it twice.
        Error::InvalidArgument(message) => Status::new(code, message),
        err => Status::new(code, err.to_string()),
    }
}

/// Extension to turn an engine `Result` into a `Result<_, Status>` with [`to_status`].
pub trait OrStatus<T> {
    /// Maps the error with [`to_status`].
    fn or_status(self) -> Result<T, Status>;
}

impl<T> OrStatus<T> for Result<T, Error> {
    fn or_status(self) -> Result<T, Status> {
        self.map_err(to_status)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// One error of every class, built through public constructors of the engine.
    fn one_of_each() -> Vec<(Error, ErrorClass, Code)> {
        let parse = portrait_engine::parse("age >=").unwrap_err();
        vec![
            (
                Error::InvalidArgument("bad".into()),
                ErrorClass::BadInput,
                Code::InvalidArgument,
            ),
            (
                Error::Parse(parse),
                ErrorClass::BadInput,
                Code::InvalidArgument,
            ),
            (
                Error::KindMismatch {
                    path: "age".into(),
                    actual: "int",
                    expected: "a flag",
                },
                ErrorClass::BadInput,
                Code::InvalidArgument,
            ),
            (
                Error::TableNotFound("t".into()),
                ErrorClass::NotFound,
                Code::NotFound,
            ),
            (
                Error::FieldNotFound {
                    path: "agee".into(),
                    suggestion: Some("age".into()),
                },
                ErrorClass::NotFound,
                Code::NotFound,
            ),
            (
                Error::KeyNotFound("u1".into()),
                ErrorClass::NotFound,
                Code::NotFound,
            ),
            (
                Error::TableExists("t".into()),
                ErrorClass::Conflict,
                Code::AlreadyExists,
            ),
            (
                Error::LimitExceeded("too many".into()),
                ErrorClass::LimitExceeded,
                Code::ResourceExhausted,
            ),
            (
                Error::Corruption {
                    path: PathBuf::from("x.seg"),
                    reason: "checksum".into(),
                },
                ErrorClass::Corruption,
                Code::DataLoss,
            ),
            (
                Error::Locked(PathBuf::from("/data")),
                ErrorClass::Unavailable,
                Code::Unavailable,
            ),
            (
                Error::Internal("bug".into()),
                ErrorClass::Internal,
                Code::Internal,
            ),
        ]
    }

    #[test]
    fn every_class_maps_to_its_code() {
        let classes = [
            (ErrorClass::BadInput, Code::InvalidArgument),
            (ErrorClass::NotFound, Code::NotFound),
            (ErrorClass::Conflict, Code::AlreadyExists),
            (ErrorClass::LimitExceeded, Code::ResourceExhausted),
            (ErrorClass::Corruption, Code::DataLoss),
            (ErrorClass::Unavailable, Code::Unavailable),
            (ErrorClass::Internal, Code::Internal),
        ];
        for (class, code) in classes {
            assert_eq!(code_of(class), code, "{class:?}");
        }
        for (err, class, code) in one_of_each() {
            assert_eq!(err.class(), class, "{err}");
            let message = err.to_string();
            let status = to_status(err);
            assert_eq!(status.code(), code, "{message}");
        }
    }

    #[test]
    fn not_found_names_the_missing_thing() {
        let status = to_status(Error::FieldNotFound {
            path: "agee".into(),
            suggestion: Some("age".into()),
        });
        assert!(status.message().contains("`agee`"), "{}", status.message());
        assert!(status.message().contains("`age`"), "{}", status.message());
        let status = to_status(Error::KeyNotFound("u42".into()));
        assert!(status.message().contains("u42"), "{}", status.message());
    }

    #[test]
    fn parse_errors_carry_their_position() {
        let err = portrait_engine::parse("vip AND\n  age >=").unwrap_err();
        let (line, column) = (err.line, err.column);
        assert_eq!((line, column), (2, 9));
        let status = to_status(Error::Parse(err));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().ends_with("at line 2, column 9"),
            "{}",
            status.message()
        );
        let get = |key| status.metadata().get(key).unwrap().to_str().unwrap();
        assert_eq!(get(LINE_METADATA), "2");
        assert_eq!(get(COLUMN_METADATA), "9");
    }

    #[test]
    fn other_errors_have_no_position() {
        let status = to_status(Error::InvalidArgument("bad".into()));
        assert!(status.metadata().get(LINE_METADATA).is_none());
    }

    #[test]
    fn invalid_arguments_are_not_prefixed_twice() {
        let status = to_status(Error::InvalidArgument("write 3: bad value".into()));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "write 3: bad value");
    }
}
