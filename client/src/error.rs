//! The client's typed error, mapped back from `tonic::Status`.
//!
//! Every gRPC status code maps to exactly one [`Error`] variant (see [`Error::from_status`]); the
//! mapping has no catch-all arm, so a new code is a compile error here rather than a silent
//! `Internal`.
//!
//! # Error positions
//!
//! When the server rejects a text expression it answers `INVALID_ARGUMENT` and says where the
//! problem is, in two redundant ways (the contract is also written in `proto/README.md`):
//!
//! - response metadata `x-portrait-line` and `x-portrait-column`, decimal, 1-based, columns counted
//!   in characters (Unicode scalar values);
//! - a message ending in `at line L, column C` (the client accepts the last `line L, column C`
//!   anywhere in the message).
//!
//! [`Error::from_status`] reads the metadata first and falls back to the message; the result is
//! [`Error::position`].

use std::fmt;

use tonic::{Code, Status};

/// Metadata key carrying the 1-based line of an expression error.
pub const LINE_METADATA: &str = "x-portrait-line";
/// Metadata key carrying the 1-based column (in characters) of an expression error.
pub const COLUMN_METADATA: &str = "x-portrait-column";

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A 1-based position in the text of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters (Unicode scalar values), starting at 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Everything a Portrait call can fail with.
///
/// The class of each variant says whether retrying can help: only *transient* errors
/// ([`Error::is_transient`]) are retried by the client, and only as its retry policy allows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input (class: caller error): an expression that does not parse or type-check, a field
    /// of the wrong kind, an out-of-range parameter. Also `OUT_OF_RANGE`.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The server's explanation.
        message: String,
        /// Where in the expression text the problem is, when the server said so.
        position: Option<Position>,
    },
    /// A table, field, key or version label does not exist (class: not found).
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing to create exists already (class: conflict).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The caller is not authenticated (class: refused).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's key may not do this or see these fields (class: refused).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A limit was hit: message size, export cap, rate or memory (class: refused).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The system is not in the state the operation needs, e.g. a cursor that no longer matches
    /// the data (class: caller error).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The call's deadline passed before it finished (class: transient for reads).
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The server is unreachable, overloaded, restarting, or aborted the call because of a
    /// concurrent change (class: transient). Also `ABORTED`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call was cancelled before it finished (class: cancelled).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The server does not implement this call, e.g. an older server (class: unsupported).
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// A bug or corruption on the server side (class: internal). Also `UNKNOWN` and `DATA_LOSS`.
    #[error("internal error: {0}")]
    Internal(String),
    /// The connection could not be set up, e.g. an invalid address or a refused connection at
    /// connect time (class: transport).
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Error {
    /// Maps a gRPC status back to the typed error, extracting the error position of
    /// `INVALID_ARGUMENT` (see the module docs).
    ///
    /// Errors raised on the client side (a refused connection, say) carry their cause as the
    /// status's source; its text is appended to the message so that it is not lost.
    pub fn from_status(status: Status) -> Self {
        let message = message_with_causes(&status);
        // A connection that broke before the server answered (reset, closed mid-call) is
        // raised by the client's transport, with the cause attached; the call never completed
        // on the server's side of the wire, so it is reported as transient.
        if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
            // The server's deadline timer fired first (tonic's CANCELLED "Timeout expired").
            return Error::DeadlineExceeded(message);
        }
        if transport_failure(&status) {
            return Error::Unavailable(message);
        }
        match status.code() {
            Code::InvalidArgument => {
                let position = position_from_metadata(status.metadata())
                    .or_else(|| position_from_message(&message));
                Error::InvalidArgument { message, position }
            }
            // tonic reports a message over the size limit as OUT_OF_RANGE; it is a limit.
            Code::OutOfRange if message.contains("message length too large") => {
                Error::ResourceExhausted(message)
            }
            Code::OutOfRange => Error::InvalidArgument {
                message,
                position: None,
            },
            Code::NotFound => Error::NotFound(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::Unauthenticated => Error::Unauthenticated(message),
            Code::PermissionDenied => Error::PermissionDenied(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            Code::Unavailable | Code::Aborted => Error::Unavailable(message),
            // tonic reports the expiry of the client's own deadline timer as CANCELLED.
            Code::Cancelled if client_deadline_expired(&status) => Error::DeadlineExceeded(message),
            Code::Cancelled => Error::Cancelled(message),
            Code::Unimplemented => Error::Unimplemented(message),
            Code::Internal | Code::Unknown | Code::DataLoss => Error::Internal(message),
            Code::Ok => Error::Internal(format!("server reported success as an error: {message}")),
        }
    }

    /// Where in the expression text the error is, for [`Error::InvalidArgument`].
    pub fn position(&self) -> Option<Position> {
        match self {
            Error::InvalidArgument { position, .. } => *position,
            _ => None,
        }
    }

    /// True for failures that may succeed when retried: [`Error::Unavailable`] and
    /// [`Error::DeadlineExceeded`]. Retrying the latter is only safe for idempotent calls.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::DeadlineExceeded(_))
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(status)
    }
}

/// True if the status was raised by the client's transport because the connection failed (its
/// cause chain holds a transport or HTTP/2 error), as opposed to a status the server sent.
fn transport_failure(status: &Status) -> bool {
    if !matches!(
        status.code(),
        Code::Internal | Code::Unknown | Code::Cancelled
    ) {
        return false;
    }
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return false;
        }
        if error.is::<tonic::transport::Error>()
            || error.is::<h2::Error>()
            || error.is::<std::io::Error>()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// True if the status was raised by the client's deadline timer rather than sent by the server.
fn client_deadline_expired(status: &Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The status message followed by the text of each cause not already in it.
fn message_with_causes(status: &Status) -> String {
    let mut message = status.message().to_owned();
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let text = error.to_string();
        if !text.is_empty() && !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        cause = error.source();
    }
    message
}

fn position_from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<Position> {
    let number =
        |key: &str| -> Option<u32> { metadata.get(key)?.to_str().ok()?.trim().parse().ok() };
    Some(Position {
        line: number(LINE_METADATA)?,
        column: number(COLUMN_METADATA)?,
    })
}

/// Finds the last `line L, column C` in a message (ASCII case-insensitive).
fn position_from_message(message: &str) -> Option<Position> {
    let lower = message.to_ascii_lowercase();
    lower.rmatch_indices("line ").find_map(|(at, needle)| {
        let rest = &lower[at + needle.len()..];
        let (line, rest) = leading_number(rest)?;
        let rest = rest
            .strip_prefix(',')?
            .trim_start()
            .strip_prefix("column ")?;
        let (column, _) = leading_number(rest)?;
        Some(Position { line, column })
    })
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    #[test]
    fn every_code_maps_to_its_variant() {
        let cases = [
            (Code::NotFound, "not found: m"),
            (Code::AlreadyExists, "already exists: m"),
            (Code::Unauthenticated, "unauthenticated: m"),
            (Code::PermissionDenied, "permission denied: m"),
            (Code::ResourceExhausted, "resource exhausted: m"),
            (Code::FailedPrecondition, "failed precondition: m"),
            (Code::DeadlineExceeded, "deadline exceeded: m"),
            (Code::Unavailable, "unavailable: m"),
            (Code::Aborted, "unavailable: m"),
            (Code::Cancelled, "cancelled: m"),
            (Code::Unimplemented, "unimplemented: m"),
            (Code::Internal, "internal error: m"),
            (Code::Unknown, "internal error: m"),
            (Code::DataLoss, "internal error: m"),
            (Code::OutOfRange, "invalid argument: m"),
            (Code::InvalidArgument, "invalid argument: m"),
        ];
        for (code, shown) in cases {
            assert_eq!(
                Error::from(Status::new(code, "m")).to_string(),
                shown,
                "{code:?}"
            );
        }
    }

    #[test]
    fn client_side_deadline_expiry_is_deadline_exceeded() {
        let mut status = Status::cancelled("Timeout expired");
        status.set_source(std::sync::Arc::new(tonic::TimeoutExpired(())));
        assert!(matches!(Error::from(status), Error::DeadlineExceeded(_)));
        assert!(matches!(
            Error::from(Status::cancelled("bye")),
            Error::Cancelled(_)
        ));
    }

    #[test]
    fn client_side_causes_are_kept_in_the_message() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let mut status = Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(refused));
        assert_eq!(
            Error::from(status).to_string(),
            "unavailable: tcp connect error: refused"
        );
        let mut status = Status::unavailable("refused by peer");
        status.set_source(std::sync::Arc::new(std::io::Error::other("refused")));
        assert_eq!(
            Error::from(status).to_string(),
            "unavailable: refused by peer"
        );
    }

    #[test]
    fn only_unavailable_and_deadline_are_transient() {
        assert!(Error::from(Status::unavailable("x")).is_transient());
        assert!(Error::from(Status::aborted("x")).is_transient());
        assert!(Error::from(Status::deadline_exceeded("x")).is_transient());
        assert!(!Error::from(Status::internal("x")).is_transient());
        assert!(!Error::from(Status::invalid_argument("x")).is_transient());
        assert!(!Error::from(Status::resource_exhausted("x")).is_transient());
    }

    #[test]
    fn position_comes_from_metadata_first() {
        let mut metadata = MetadataMap::new();
        metadata.insert(LINE_METADATA, "2".parse().unwrap());
        metadata.insert(COLUMN_METADATA, " 7".parse().unwrap());
        let status = Status::with_metadata(
            Code::InvalidArgument,
            "unexpected token at line 1, column 3",
            metadata,
        );
        let error = Error::from(status);
        assert_eq!(error.position(), Some(Position { line: 2, column: 7 }));
        assert_eq!(
            error.to_string(),
            "invalid argument: unexpected token at line 1, column 3"
        );
    }

    #[test]
    fn position_falls_back_to_the_message() {
        let error = Error::from(Status::invalid_argument(
            "unknown field 'agee' at Line 1, Column 14",
        ));
        assert_eq!(
            error.position(),
            Some(Position {
                line: 1,
                column: 14
            })
        );
    }

    #[test]
    fn incomplete_metadata_falls_back_to_the_message() {
        let mut metadata = MetadataMap::new();
        metadata.insert(LINE_METADATA, "4".parse().unwrap());
        let status =
            Status::with_metadata(Code::InvalidArgument, "bad at line 1, column 9", metadata);
        assert_eq!(
            Error::from(status).position(),
            Some(Position { line: 1, column: 9 })
        );
    }

    #[test]
    fn messages_without_a_position_have_none() {
        for message in [
            "expected a number",
            "line 3",
            "line x, column 2",
            "line 3, col 4",
        ] {
            assert_eq!(position_from_message(message), None, "{message}");
        }
        assert_eq!(
            position_from_message("see line 1, column 2; then line 5, column 6"),
            Some(Position { line: 5, column: 6 })
        );
        assert_eq!(
            Error::from(Status::not_found("line 1, column 2")).position(),
            None
        );
    }
}
