//! Request builders, one per RPC, grouped by service.
//!
//! Every builder is created by a [`Client`] method, takes its options as chained setters, and is
//! sent by `.await`ing it (it implements [`IntoFuture`]) or, equivalently, by calling `.send()`.
//! A response whose only payload is one value resolves to that value (`count` gives a `u64`,
//! `contains` a `bool`, `list_tables` a `Vec<Table>`); the others resolve to the response
//! message.
//!
//! Common setters: `.table(name)` overrides the client's default table, `.as_of(label)` reads
//! fields at a version label, `.timeout(duration)` overrides the call deadline.

use std::time::Duration;

use crate::client::Client;

mod admin;
mod analysis;
mod behaviour;
mod catalog;
mod ingest;
mod members;
mod query;
mod realtime;

pub use admin::{Backup, Stats, Version};
pub use analysis::{Aggregate, Distribution, Explain, Group, Overlap, OverlapMatrix, Sample, Top};
pub use behaviour::{Active, Frequency, Funnel, Retention};
pub use catalog::{CreateTable, DropTable, GetField, ListFields, ListTables, Tree};
pub use ingest::{DropVersion, LOAD_CHUNK_BYTES, ListVersions, Load, LoadFormat, LoadPath};
pub use members::{MemberStream, Members};
pub use query::{BatchPortrait, Contains, Count, GetPortrait};
pub use realtime::{Compact, DeltaStats, IntoValue, Write, value};

/// Declares a request builder: the struct, its constructor, `timeout`, `message` and
/// `IntoFuture` (which boxes the builder's `send`).
macro_rules! request_builder {
    ($(#[$doc:meta])* $name:ident: $message:ty => $output:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        #[must_use = "a request does nothing until it is `.await`ed"]
        pub struct $name {
            client: $crate::Client,
            message: $message,
            timeout: Option<::std::time::Duration>,
        }

        impl $name {
            pub(crate) fn new(client: &$crate::Client, message: $message) -> Self {
                Self { client: client.clone(), message, timeout: None }
            }

            /// Deadline of this call, overriding the client's default.
            pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.timeout = Some(timeout);
                self
            }

            /// The wire message as it will be sent.
            pub fn message(&self) -> &$message {
                &self.message
            }
        }

        impl ::std::future::IntoFuture for $name {
            type Output = $crate::Result<$output>;
            type IntoFuture = ::std::pin::Pin<
                Box<dyn ::std::future::Future<Output = $crate::Result<$output>> + Send>,
            >;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.send())
            }
        }
    };
}

/// Adds `.table(..)` to builders whose message has a `table` field.
macro_rules! table_setter {
    ($($name:ident),* $(,)?) => {$(
        impl $name {
            /// The table to address, instead of the client's default table.
            pub fn table(mut self, table: impl Into<String>) -> Self {
                self.message.table = table.into();
                self
            }
        }
    )*};
}

/// Adds `.as_of(..)` to builders whose message has an `as_of` field.
macro_rules! as_of_setter {
    ($($name:ident),* $(,)?) => {$(
        impl $name {
            /// Reads every field at its version labelled `label` (e.g. `"2026-11-25"`)
            /// instead of the latest data; a field without that version fails the call with
            /// [`Error::NotFound`](crate::Error::NotFound).
            pub fn as_of(mut self, label: impl Into<String>) -> Self {
                self.message.as_of = Some(label.into());
                self
            }
        }
    )*};
}

pub(crate) use {as_of_setter, request_builder, table_setter};

/// The `timeout` a stream call starts with: only an explicit one, never the unary default.
pub(crate) fn stream_request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(deadline) = timeout {
        request.set_timeout(deadline);
    }
    request
}

/// Error for a response that lacks a field the contract says is always set.
pub(crate) fn missing(what: &str) -> crate::Error {
    crate::Error::Internal(format!("server response lacks `{what}`"))
}

/// The table a new request starts with.
pub(crate) fn table(client: &Client) -> String {
    client.default_table().to_owned()
}
